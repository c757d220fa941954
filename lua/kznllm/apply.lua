-- :KznApply: an answer from a debug view, an opened history entry or a re-run put in
-- place of the code it was asked about (tracked by extmarks, else found in its file).
local M = {}

local api = vim.api
local notify = require('kznllm.notify').notify
local config = require('kznllm.config')
local job = require('kznllm.job')
local host = require('kznllm.host')

--- scratch buffer -> { buf, region }: the selection a debug view's replace was asked
--- about, tracked by its extmarks while both buffers live
local sources = {}

--- `scratch` shows the answer to `region` of `buf`: :KznApply there puts it in place.
function M.remember_source(scratch, buf, region)
  sources[scratch] = { buf = buf, region = region }
  api.nvim_create_autocmd('BufWipeout', {
    buffer = scratch,
    once = true,
    callback = function()
      local s = sources[scratch]
      sources[scratch] = nil
      if s and api.nvim_buf_is_valid(s.buf) then
        job.release(s.region)
      end
    end,
  })
end

--- The one place `text` stands in `buf`, as { srow, scol, erow, ecol }, or nil and why.
local function find_unique(buf, text)
  local all = table.concat(api.nvim_buf_get_lines(buf, 0, -1, true), '\n')
  local at = all:find(text, 1, true)
  if not at then
    return nil, 'the code it was asked about is no longer there'
  end
  if all:find(text, at + 1, true) then
    return nil, 'the code it was asked about stands there more than once'
  end
  local function pos(offset) -- 0-based byte offset -> row, col
    local before = all:sub(1, offset)
    local row = select(2, before:gsub('\n', ''))
    local last_nl = before:match('.*()\n')
    return row, last_nl and (offset - last_nl) or offset
  end
  local sr, sc = pos(at - 1)
  local er, ec = pos(at - 1 + #text)
  return { sr, sc, er, ec }
end

--- Where the answer of the conversation in `scratch` goes: the tracked selection, else
--- the recorded selection found once in its file. Returns buf, region or nil, why.
local function apply_target(scratch, data)
  local src = sources[scratch]
  if src and api.nvim_buf_is_valid(src.buf) then
    if job.region_changed(src.region) then
      return nil, 'the selected code was changed since; nothing was applied'
    end
    return src.buf, src.region
  end
  if not data.path or data.path == '' then
    return nil, 'the entry has no file to apply it to'
  end
  local buf = vim.fn.bufadd(data.path)
  vim.fn.bufload(buf)
  local range, why = find_unique(buf, data.selection)
  if not range then
    return nil, why
  end
  return buf, job.capture(buf, { kind = 'range', range = range })
end

--- From the host: the entry to apply (see :KznApply).
function M.apply_entry(data, scratch)
  if not data.selection or data.selection == '' then
    return notify(
      ('kznllm: #%d was not a replace: there is no code to put it in place of'):format(data.id),
      vim.log.levels.ERROR
    )
  end
  local buf, region = apply_target(scratch, data)
  if not buf then
    return notify(('kznllm: cannot apply #%d: %s'):format(data.id, region), vim.log.levels.ERROR)
  end
  if not vim.bo[buf].modifiable then
    job.release(region)
    return notify('kznllm: the buffer is not modifiable', vim.log.levels.ERROR)
  end
  local b = job.text_bounds(region)
  local lines = vim.split(data.text, '\n', { plain = true })
  api.nvim_buf_call(buf, function()
    vim.o.undolevels = vim.o.undolevels -- its own undo step
    api.nvim_buf_set_text(buf, b[1], b[2], b[3], b[4], lines)
  end)
  job.release(region)
  if sources[scratch] and sources[scratch].region == region then
    sources[scratch] = nil
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
  local er = b[1] + #lines - 1
  local ec = #lines == 1 and b[2] + #lines[1] or #lines[#lines]
  if config.options.review then
    local key = 'apply-' .. data.id
    require('kznllm.review').open(key, buf, { b[1], b[2], er, ec }, data.selection)
    require('kznllm.review').update(key, data.diff, true)
  else
    notify(('kznllm: #%d applied (u takes it back)'):format(data.id))
  end
end

--- :KznApply in a debug view, an opened history entry or a re-run: its answer in place
--- of the code it was asked about.
function M.apply()
  local scratch = api.nvim_get_current_buf()
  local entry = vim.b[scratch].kznllm_entry
  if not vim.b[scratch].kznllm_conversation or not entry then
    return notify(
      'kznllm: nothing to apply here: :KznApply works in a debug view, an opened history'
        .. ' entry or a re-run (with history on)',
      vim.log.levels.ERROR
    )
  end
  if job.streaming_in(scratch) then
    return notify('kznllm: the answer is still streaming here', vim.log.levels.WARN)
  end
  M.applying = scratch
  host.notify('history_entry', { id = entry, action = 'apply' })
end

return M
