-- :KznApply: an answer from a debug view, an opened history entry or a re-run put in
-- place of the code it was asked about. The host decides (kznllm_py/apply.py): which
-- answer of the conversation, whether it finished, where the selection stands in its
-- file now. Here: the selection a debug view tracks by extmarks, the buffer's lines
-- sent to be searched, and the write.
local M = {}

local api = vim.api
local notify = require('kznllm.notify').notify
local config = require('kznllm.config')
local job = require('kznllm.job')
local host = require('kznllm.host')

--- scratch buffer -> { buf, region }: the selection a debug view's replace was asked
--- about, tracked by its extmarks while both buffers live (once applied, the buffer
--- alone: a later :KznApply searches it, a file or not)
local sources = {}

--- searches in flight: token -> { plan, buf, tick, created, tries }
local pending, next_token = {}, 0

-- a buffer larger than this is not sent to the host to be searched
M.MAX_SEARCH_BYTES = 16 * 1024 * 1024

--- `scratch` shows the answer to `region` of `buf`: :KznApply there puts it in place.
function M.remember_source(scratch, buf, region)
  sources[scratch] = { buf = buf, region = region }
  api.nvim_create_autocmd('BufWipeout', {
    buffer = scratch,
    once = true,
    callback = function()
      local s = sources[scratch]
      sources[scratch] = nil
      if s and s.region and api.nvim_buf_is_valid(s.buf) then
        job.release(s.region)
      end
    end,
  })
end

--- Where a replace's selection stands now, for history (the host adds the text around
--- it): { kind = 'range', range = { srow, scol, erow, ecol }, last_len } or
--- { kind = 'block', rows = { { row, scol, ecol }, ... } }.
function M.span(r)
  if r.kind == 'block' then
    local rows = {}
    for _, pair in ipairs(r.pairs) do
      local a = api.nvim_buf_get_extmark_by_id(r.buf, job.ns, pair[1], {})
      local b = api.nvim_buf_get_extmark_by_id(r.buf, job.ns, pair[2], {})
      if not a[1] or not b[1] then
        return nil
      end
      table.insert(rows, { a[1], a[2], b[2] })
    end
    return { kind = 'block', rows = rows }
  end
  local b = job.text_bounds(r)
  return b and { kind = 'range', range = b, last_len = job.line_len(r.buf, b[3]) } or nil
end

local function say(msg, level)
  notify('kznllm: ' .. msg, vim.log.levels[level or 'ERROR'] or vim.log.levels.ERROR)
end

--- Put `plan.text` in place of `region` of `buf` as its own undo step; a blockwise
--- region loses its columns and the answer goes at its top-left corner, as a blockwise
--- fill writes it. Under review (not blockwise) the answer opens as a review.
local function put(plan, buf, region, scratch)
  if not vim.bo[buf].modifiable then
    job.release(region)
    return say("the buffer is not modifiable ('modifiable' is off); nothing was applied")
  end
  local at = job.bounds(region)
  if at and job.overlapping(buf, at) then
    job.release(region)
    return say(
      ('cannot apply #%d: another answer is streaming there (<Esc> cancels it)'):format(plan.id),
      'WARN'
    )
  end
  local lines = vim.split(plan.text, '\n', { plain = true })
  local b = job.text_bounds(region)
  local block = region.kind == 'block'
  local rows = {}
  if block then
    for _, pair in ipairs(region.pairs) do
      local s = api.nvim_buf_get_extmark_by_id(buf, job.ns, pair[1], {})
      local e = api.nvim_buf_get_extmark_by_id(buf, job.ns, pair[2], {})
      table.insert(rows, { s[1], s[2], e[2] })
    end
  end
  job.release(region)
  api.nvim_buf_call(buf, function()
    vim.o.undolevels = vim.o.undolevels -- its own undo step
    if block then
      for i = #rows, 1, -1 do
        local x = rows[i]
        api.nvim_buf_set_text(buf, x[1], x[2], x[1], x[3], { '' })
      end
      b = { rows[1][1], rows[1][2], rows[1][1], rows[1][2] }
    end
    api.nvim_buf_set_text(buf, b[1], b[2], b[3], b[4], lines)
  end)
  if sources[scratch] and sources[scratch].region == region then
    sources[scratch] = { buf = buf }
  end
  -- show it: in a window that has it, else in the window before the scratch one
  local win = vim.fn.win_findbuf(buf)[1]
  if not win then
    vim.cmd('wincmd p')
    api.nvim_win_set_buf(0, buf)
    win = api.nvim_get_current_win()
  end
  api.nvim_set_current_win(win)
  pcall(api.nvim_win_set_cursor, win, { b[1] + 1, b[2] })
  local note = (plan.note and plan.note ~= '') and ('; ' .. plan.note) or ''
  if config.options.review and not block then
    local er = b[1] + #lines - 1
    local ec = #lines == 1 and b[2] + #lines[1] or #lines[#lines]
    local key = 'apply-' .. plan.id
    require('kznllm.review').open(key, buf, { b[1], b[2], er, ec }, plan.selection)
    require('kznllm.review').update(key, nil, true)
    if note ~= '' then
      say(('#%d under review%s'):format(plan.id, note), 'INFO')
    end
  else
    say(('#%d applied (u takes it back)%s'):format(plan.id, note), 'INFO')
  end
end

--- Forget a buffer this apply loaded and did not change.
local function drop(p)
  if p and p.created and api.nvim_buf_is_valid(p.buf) and not vim.bo[p.buf].modified then
    pcall(api.nvim_buf_delete, p.buf, { force = false })
  end
end

--- Send `buf`'s lines to the host to find where the plan's selection stands.
local function search(p)
  local buf = p.buf
  local size = api.nvim_buf_get_offset(buf, api.nvim_buf_line_count(buf))
  if size > M.MAX_SEARCH_BYTES then
    drop(p)
    local mb = size / 2 ^ 20
    return say(
      ('cannot apply #%d: %s is too large to search (%d MB)'):format(p.plan.id, p.name, mb)
    )
  end
  next_token = next_token + 1
  p.tick = api.nvim_buf_get_changedtick(buf)
  pending[next_token] = p
  host.notify('apply_locate', {
    token = next_token,
    lines = api.nvim_buf_get_lines(buf, 0, -1, true),
    selection = p.plan.selection,
    text = p.plan.text,
    span = p.plan.span or '',
    name = p.name,
  })
end

--- From the host: the answer to apply (`plan`, see kznllm_py/apply.py Plan.to_dict)
--- for the conversation shown in `scratch`.
function M.planned(plan, scratch)
  local src = sources[scratch]
  if src and api.nvim_buf_is_valid(src.buf) and not src.region then
    local name = vim.fn.fnamemodify(api.nvim_buf_get_name(src.buf), ':t')
    return search({ plan = plan, buf = src.buf, scratch = scratch, tries = 1, name = name })
  end
  if src and api.nvim_buf_is_valid(src.buf) then
    if job.region_changed(src.region) then
      return say(
        ('cannot apply #%d: the selected code was changed since; nothing was applied'):format(
          plan.id
        )
      )
    end
    return put(plan, src.buf, src.region, scratch)
  end
  local path = plan.path
  if not path or path == '' then
    return say(('cannot apply #%d: the entry has no file to apply it to'):format(plan.id))
  end
  local created = vim.fn.bufexists(path) == 0 -- an exact name, not a pattern
  local buf = created and -1 or vim.fn.bufadd(path)
  if created or not api.nvim_buf_is_loaded(buf) then
    if vim.fn.filereadable(path) == 0 then
      return say(('cannot apply #%d: %s is gone'):format(plan.id, vim.fn.fnamemodify(path, ':~')))
    end
    buf = vim.fn.bufadd(path)
    vim.fn.bufload(buf)
  end
  local name = vim.fn.fnamemodify(path, ':t')
  search({ plan = plan, buf = buf, created = created, scratch = scratch, tries = 1, name = name })
end

--- From the host: where the selection stands (`found`: { range = {..} } or
--- { rows = {..} }, 0-based, end exclusive) in the lines sent with `token`.
function M.located(token, found)
  local p = pending[token]
  pending[token] = nil
  if not p then
    return
  end
  if not api.nvim_buf_is_valid(p.buf) then
    return say(('cannot apply #%d: its buffer was closed meanwhile'):format(p.plan.id))
  end
  if api.nvim_buf_get_changedtick(p.buf) ~= p.tick then
    -- changed while the host looked: the positions are stale, look again
    if p.tries < 3 then
      p.tries = p.tries + 1
      return search(p)
    end
    return say(('cannot apply #%d: %s kept changing; try again'):format(p.plan.id, p.name))
  end
  local region
  if found.rows then
    region = job.capture(p.buf, { kind = 'block', rows = found.rows })
  else
    region = job.capture(p.buf, { kind = 'range', range = found.range })
  end
  put(p.plan, p.buf, region, p.scratch)
end

--- From the host: why nothing is applied (the search with `token`, or the plan).
function M.refused(token, why, level)
  local p = token and pending[token]
  if token then
    pending[token] = nil
  end
  drop(p)
  if p then -- where the selection stands: said of the answer it was for
    local sep = level == 'INFO' and ' ' or ': '
    why = ('%s#%d%s%s'):format(level == 'INFO' and '' or 'cannot apply ', p.plan.id, sep, why)
  end
  say(why, level)
end

--- :KznApply[!] in a debug view, an opened history entry or a re-run: the latest code
--- answer of its conversation in place of the code the first request was asked about.
--- `force`: an answer that did not finish (cancelled, failed, still streaming) too.
function M.apply(force)
  local scratch = api.nvim_get_current_buf()
  local entry = vim.b[scratch].kznllm_entry
  if not vim.b[scratch].kznllm_conversation or not entry then
    return say(
      'nothing to apply here: :KznApply works in a debug view, an opened history'
        .. ' entry or a re-run (with history on)'
    )
  end
  if job.streaming_in(scratch) and not force then
    return say(
      'the answer is still streaming here: nothing was applied (:KznApply! applies what came)',
      'WARN'
    )
  end
  host.notify('apply', { id = entry, bang = force and true or false, scratch = scratch })
end

return M
