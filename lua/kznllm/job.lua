-- Jobs in the editor: the extmarks a generation writes at, the atomic write helper
-- (undojoin + set_text, so one generation is one undo step), the progress indicator,
-- <Esc> to cancel, and the end of a job (message, autocmd). The Python host calls
-- write() and finish() as notifications; nothing here waits on the network.
local M = {}

local api = vim.api
local ns = api.nvim_create_namespace('kznllm')
M.ns = ns

---@type table<integer, table>
M.jobs = {}
local next_id = 0

local config = require('kznllm.config')

local function cancel_key()
  local km = config.options.keymaps
  return km and km.cancel or nil
end

local function hl_defaults()
  api.nvim_set_hl(0, 'KznllmPending', { default = true, link = 'Visual' })
  api.nvim_set_hl(0, 'KznllmProgress', { default = true, link = 'Comment' })
  api.nvim_set_hl(0, 'KznllmPartial', { default = true, link = 'DiagnosticWarn' })
end
hl_defaults()

local notify = require('kznllm.notify').notify
local resolve -- below, with the preset a job runs with

local function mark_pos(buf, id)
  local p = api.nvim_buf_get_extmark_by_id(buf, ns, id, {})
  return p[1], p[2]
end

local anchor -- where a job's progress shows (defined with the regions below)

-- progress: fidget.nvim when installed, else virtual text by the extmark ---------------
-- setup({ progress = true | false | { message = function(info) return string end } }):
-- the message function words both; info is progress_info()'s table.

local function progress_opts()
  local p = config.options.progress
  if not p then
    return nil
  end
  return type(p) == 'table' and p or {}
end

--- The default progress message: the label, the elapsed seconds, and a retry's wait.
function M.default_message(info)
  local s = ('%s %.1fs'):format(info.label, info.elapsed)
  if info.status == 'retrying' then
    s = s .. ' · ' .. info.note
  elseif info.status ~= 'waiting' and info.status ~= 'streaming' then
    s = s .. ' · ' .. info.status
  end
  return s
end

--- What a message function is given. status: 'waiting' (no text yet), 'retrying' (note
--- says why), 'streaming', then at the end 'ok' | 'error' | 'cancelled' (with usage when
--- the provider reported it).
local function progress_info(job, status, usage)
  resolve(job)
  if not status then
    status = job.written and 'streaming' or (job.note and 'retrying' or 'waiting')
  end
  return {
    id = job.id,
    bufnr = job.buf,
    label = job.label,
    preset = job.preset,
    model = job.model,
    elapsed = (vim.uv.hrtime() - job.started) / 1e9,
    chars = job.chars,
    tokens = job.tokens, -- the host's estimate of the answer's tokens so far
    status = status,
    note = job.note,
    usage = usage,
  }
end

local function progress_text(job, status, usage)
  local info = progress_info(job, status, usage)
  local fn = (progress_opts() or {}).message
  if type(fn) == 'function' then
    local ok, s = pcall(fn, info)
    if ok and type(s) == 'string' then
      return s
    end
    if ok and s ~= nil then
      s = 'returned a ' .. type(s) .. ', not a string'
    end
    if s ~= nil and not job.message_failed then
      job.message_failed = true -- once per job, then the default message
      notify('kznllm: progress.message: ' .. tostring(s), vim.log.levels.WARN)
    end
  end
  return M.default_message(info)
end

local function progress_update(job, tick, timer)
  if job.done then
    return
  end
  local now = vim.uv.hrtime()
  if timer and job.wrote_at and now - job.wrote_at < 3e8 and now - (job.shown_at or 0) < 5e8 then
    -- text is landing: that is the progress; a spinner redraw now would cost a heavy
    -- buffer (treesitter) a second redraw for nothing (but twice a second it moves, at
    -- any token rate: a slow stream lands text every tick)
    return
  end
  job.shown_at = now
  local text = progress_text(job)
  if job.fidget then
    if text ~= job.reported then
      job.reported = text
      pcall(function()
        job.fidget:report({ message = text })
      end)
    end
    return
  end
  if not job.indicator or not api.nvim_buf_is_valid(job.buf) then
    return
  end
  local ok, row, col = pcall(anchor, job)
  if not ok or not row then
    return
  end
  job.tick = tick or job.tick or 0
  pcall(api.nvim_buf_set_extmark, job.buf, ns, row, col, {
    id = job.indicator,
    virt_text = {
      { (' %s %s'):format(require('kznllm.notify').spinner(job.tick), text), 'KznllmProgress' },
    },
    virt_text_pos = 'eol',
    right_gravity = true,
  })
end

local function progress_start(job)
  if not progress_opts() then
    return
  end
  local ok, fidget = pcall(require, 'fidget.progress')
  if ok and type(fidget) == 'table' and fidget.handle then
    job.reported = progress_text(job)
    local ok2, handle = pcall(fidget.handle.create, {
      title = 'kznllm',
      message = job.reported,
      lsp_client = { name = 'kznllm' },
    })
    job.fidget = ok2 and handle or nil
  end
  if not job.fidget then
    local r, c = anchor(job)
    job.indicator = api.nvim_buf_set_extmark(job.buf, ns, r or 0, c or 0, {})
    progress_update(job, 0)
  end
  job.timer = vim.uv.new_timer()
  local tick = 0
  job.timer:start(
    100,
    100,
    vim.schedule_wrap(function()
      tick = tick + 1
      progress_update(job, tick, true)
    end)
  )
end

local function progress_stop(job, status, usage)
  if job.timer then
    job.timer:stop()
    job.timer:close()
    job.timer = nil
  end
  if job.indicator and api.nvim_buf_is_valid(job.buf) then
    pcall(api.nvim_buf_del_extmark, job.buf, ns, job.indicator)
  end
  job.indicator = nil
  if job.fidget then
    local text = progress_text(job, status, usage)
    pcall(function()
      job.fidget.message = text
      job.fidget:finish()
    end)
    job.fidget = nil
  end
end

--- The preset id and model a job runs with, as far as the editor knows them before the
--- host has said (resolve()): opts.preset, else the current preset, and its model when
--- it is one of setup()'s presets.
local function preset_and_model(opts)
  local preset, model = opts.preset, opts.model
  if not preset then
    preset = require('kznllm.presets').current_preset() or nil
  end
  for _, p in ipairs(not model and config.options.presets or {}) do
    if type(p) == 'table' and p.id == preset then
      model = p.model
    end
  end
  return preset, model
end

--- `job`'s preset, model and 'auto' placement as the host resolved them (host.known,
--- from the settings it got: the default preset, a model picked with :KznPreset!, a
--- fill-in-the-middle preset's answer at the cursor), once it has said them; it says
--- them before any text of a fill it runs with them.
resolve = function(job)
  local known = require('kznllm.host').known
  if job.resolved or not known then
    return
  end
  job.resolved = true
  local id = job.preset or known.default
  local p = known.presets[id or '']
  if p then
    job.preset, job.model = id, p.model
    if job.auto and not job.written and job.region.kind == 'point' then
      job.placement = p.auto
    end
  end
end

-- regions: every position a request uses is an extmark from the keypress -------------
--
-- A region is captured in the same tick as the keypress or the command, before the
-- query prompt opens, and every later step resolves it from its extmarks: text typed,
-- streamed or undone elsewhere moves the marks, never where the answer goes.
--   range  one pair of marks (start, end) around the selection; a linewise selection
--          ends at the start of the line after it, so deleting its lines shows
--   block  one pair per row of a blockwise selection
--   point  normal mode: the insertion point after the cursor and the start of its line
-- The start mark has right gravity and the end mark left: text inserted at either edge
-- stays outside the selection. The selection's text is kept; if it differs when the
-- request starts or when its first token comes, nothing is replaced.

local function before_or_at(ar, ac, br, bc)
  return ar < br or (ar == br and ac <= bc)
end

local function line_at(buf, row)
  return api.nvim_buf_get_lines(buf, row, row + 1, false)[1]
end

--- The byte length of line `row`, from buffer offsets: the line itself is not read
--- (a 1 MB line would be copied into Lua for its length). nil past the last line.
function M.line_len(buf, row)
  local count = api.nvim_buf_line_count(buf)
  if row < 0 or row >= count then
    return nil
  end
  local len = api.nvim_buf_get_offset(buf, row + 1) - api.nvim_buf_get_offset(buf, row)
  if row < count - 1 then
    return len - 1
  end
  -- the last line's EOL counts only when it would be written ('eol', or 'fixeol'
  -- without 'binary')
  local bo = vim.bo[buf]
  return (bo.eol or (bo.fixeol and not bo.binary)) and len - 1 or len
end
local line_len = M.line_len

--- Whether line `row` holds only white space (read in full only when it is short, or
--- when its start is all white space).
local function blank_line(buf, row, len)
  local head = api.nvim_buf_get_text(buf, row, 0, row, math.min(len, 256), {})[1] or ''
  if not head:match('^%s*$') then
    return false
  end
  return len <= 256 or (line_at(buf, row) or ''):match('^%s*$') ~= nil
end

local function mark(buf, row, col, right_gravity)
  return api.nvim_buf_set_extmark(buf, ns, row, col, { right_gravity = right_gravity })
end

--- The spans of a range or block region now ({ srow, scol, erow, ecol } each), or nil
--- when its marks are gone or crossed (the text between them was deleted).
local function spans(r)
  local out = {}
  for _, pair in ipairs(r.pairs) do
    local a = api.nvim_buf_get_extmark_by_id(r.buf, ns, pair[1], {})
    local b = api.nvim_buf_get_extmark_by_id(r.buf, ns, pair[2], {})
    if not a[1] or not b[1] or not before_or_at(a[1], a[2], b[1], b[2]) then
      return nil
    end
    table.insert(out, { a[1], a[2], b[1], b[2] })
  end
  return out
end

local function span_text(buf, s)
  return table.concat(api.nvim_buf_get_text(buf, s[1], s[2], s[3], s[4], {}), '\n')
end

--- The region's text now (a block's rows joined by newlines; a linewise range with the
--- line break after it), or nil when it is gone.
function M.region_text(r)
  if r.kind == 'point' or not api.nvim_buf_is_valid(r.buf) then
    return nil
  end
  local s = spans(r)
  if not s then
    return nil
  end
  local parts = {}
  for _, x in ipairs(s) do
    table.insert(parts, span_text(r.buf, x))
  end
  return table.concat(parts, '\n')
end

--- The text a request sends as its selection (a linewise range without its line break).
function M.selection(r)
  local t = M.region_text(r) or ''
  return r.nl and t:sub(1, -2) or t
end

--- True when the selected text is no longer what it was at the keypress.
function M.region_changed(r)
  return r.kind ~= 'point' and M.region_text(r) ~= r.text
end

--- Capture a region now. spec: { kind = 'range', range = { srow, scol, erow, ecol },
--- linewise = bool } | { kind = 'block', rows = { { row, scol, ecol }, ... } } |
--- { kind = 'point', row = r, col = c, placement = p } (0-based, end exclusive).
function M.capture(buf, spec)
  local r = { buf = buf, kind = spec.kind, placement = spec.placement, marks = {} }
  local function add(row, col, gravity)
    local id = mark(buf, row, col, gravity)
    table.insert(r.marks, id)
    return id
  end
  if spec.kind == 'point' then
    r.point = add(spec.row, spec.col, false)
    r.line = add(spec.row, 0, false)
    return r
  end
  r.pairs = {}
  local rows = spec.rows or { spec.range }
  for _, x in ipairs(rows) do
    local sr, sc, er, ec = x[1], x[2], x[3], x[4]
    if spec.kind == 'block' then
      sr, sc, er, ec = x[1], x[2], x[1], x[3]
    end
    if spec.linewise and er + 1 < api.nvim_buf_line_count(buf) then
      er, ec, r.nl = er + 1, 0, true
    end
    table.insert(r.pairs, { add(sr, sc, true), add(er, ec, false) })
  end
  r.text = M.region_text(r)
  return r
end

--- Forget a region's marks (the prompt was dismissed, or the job took them over).
function M.release(r)
  if r and api.nvim_buf_is_valid(r.buf) then
    for _, id in ipairs(r.marks) do
      pcall(api.nvim_buf_del_extmark, r.buf, ns, id)
    end
  end
end

--- Where a region is now: { srow, scol, erow, ecol }. A point stands for its whole line
--- unless it writes at the cursor (another request there would touch it).
function M.bounds(r, placement)
  if r.kind == 'point' then
    local p = api.nvim_buf_get_extmark_by_id(r.buf, ns, r.point, {})
    if (placement or r.placement) == 'cursor' then
      return { p[1], p[2], p[1], p[2] }
    end
    local row = api.nvim_buf_get_extmark_by_id(r.buf, ns, r.line, {})[1]
    local len = line_len(r.buf, row) or 0
    return { math.min(row, p[1]), 0, math.max(row, p[1]), math.max(len, p[2]) }
  end
  local s = spans(r)
  if not s then
    return nil
  end
  local first, last = s[1], s[#s]
  return { first[1], first[2], last[3], last[4] }
end

--- The cursor line of a point region split at its insertion point: { head, rest,
--- blank } (the host moves the prompt's context split to where the answer goes).
--- A part longer than `most` bytes (the context the host gets) cannot be in it: it is
--- left out (nil), which the host reads as "split where it is".
function M.spot(r, most)
  local buf = r.buf
  local p = api.nvim_buf_get_extmark_by_id(buf, ns, r.point, {})
  local len = line_len(buf, p[1]) or 0
  local function part(sc, ec)
    if ec - sc > most then
      return nil
    end
    return api.nvim_buf_get_text(buf, p[1], sc, p[1], ec, {})[1] or ''
  end
  return { head = part(0, p[2]), rest = part(p[2], len), blank = blank_line(buf, p[1], len) }
end

--- The text a request is about, as context sees it: the region's bounds, a linewise
--- range's ending before its last line break (the context after it starts with it).
function M.text_bounds(r)
  local b = M.bounds(r, 'cursor')
  if b and r.nl and b[3] > b[1] then
    return { b[1], b[2], b[3] - 1, line_len(r.buf, b[3] - 1) or 0 }
  end
  return b
end

local function job_bounds(job)
  if job.written then
    local h = api.nvim_buf_get_extmark_by_id(job.buf, ns, job.head, {})
    local t = api.nvim_buf_get_extmark_by_id(job.buf, ns, job.tail, {})
    return h[1] and t[1] and { h[1], h[2], t[1], t[2] } or nil
  end
  return M.bounds(job.region, job.placement)
end

--- The running job in `buf` whose region or answer overlaps (or touches) `b`, if any.
function M.overlapping(buf, b)
  for _, job in pairs(M.jobs) do
    if job.buf == buf and not job.done and not job.stopping then
      local o = job_bounds(job)
      if o and before_or_at(b[1], b[2], o[3], o[4]) and before_or_at(o[1], o[2], b[3], b[4]) then
        return job
      end
    end
  end
  return nil
end

-- the position progress shows at: the answer's end, or the region's until text comes
anchor = function(job)
  if job.written then
    return mark_pos(job.buf, job.tail)
  end
  local b = M.bounds(job.region, job.placement)
  if not b then
    return nil
  end
  if job.region.kind ~= 'point' then
    b = M.text_bounds(job.region) -- by the last selected line, not the next
  end
  return b[3], b[4]
end

-- <Esc> cancels while a job runs in the buffer, then does what the user's own <Esc> does

local function running_in(buf)
  local n = 0
  for _, job in pairs(M.jobs) do
    if job.buf == buf and not job.done then
      n = n + 1
    end
  end
  return n
end

--- Does an answer stream into `buf` now?
function M.streaming_in(buf)
  return running_in(buf) > 0
end

-- the user's own mapping of the key, as maparg() gives it (buffer-local first)
local function run_mapping(m)
  local function feed(keys)
    api.nvim_feedkeys(
      api.nvim_replace_termcodes(keys, true, true, true),
      m.noremap == 1 and 'ni' or 'mi', -- first in the typeahead: as if the key ran it
      false
    )
  end
  if m.callback then
    local ok, keys = pcall(m.callback)
    if m.expr == 1 and ok and type(keys) == 'string' then
      feed(keys)
    end
  elseif m.rhs and m.rhs ~= '' then
    if m.expr == 1 then
      local ok, keys = pcall(api.nvim_eval, m.rhs)
      if ok and type(keys) == 'string' then
        feed(keys)
      end
    else
      feed(m.rhs)
    end
  end
end

local function map_cancel(buf)
  local key = cancel_key()
  if not key or running_in(buf) > 1 then
    return
  end
  local prev = api.nvim_buf_call(buf, function()
    return vim.fn.maparg(key, 'n', false, true)
  end)
  local user = prev and not vim.tbl_isempty(prev) and prev or nil
  if user and user.buffer == 1 then
    vim.b[buf].kznllm_saved_map = user
  end
  vim.keymap.set('n', key, function()
    M.cancel_buffer(buf)
    if user then
      run_mapping(user)
    end
  end, { buffer = buf, desc = 'kznllm: cancel the running request', nowait = true })
end

local function unmap_cancel(buf)
  local key = cancel_key()
  if not key or not api.nvim_buf_is_valid(buf) or running_in(buf) > 0 then
    return
  end
  pcall(vim.keymap.del, 'n', key, { buffer = buf })
  local saved = vim.b[buf].kznllm_saved_map
  if saved then
    api.nvim_buf_call(buf, function()
      vim.fn.mapset('n', false, saved)
    end)
    vim.b[buf].kznllm_saved_map = nil
  end
end

-- undo: which of a job's writes are still in effect ----------------------------------

-- Is change `seq` on the path from the root of the undo tree to the current state
-- `target`? (undotree(): each entry's `alt` holds the branches that replace it.)
local function on_path(entries, target, seq, seen)
  for _, e in ipairs(entries) do
    for _, branch in ipairs(e.alt or {}) do
      local found, yes = on_path(branch, target, seq, seen)
      if found then
        return true, yes
      end
    end
    seen = seen or e.seq == seq
    if e.seq == target then
      return true, seen
    end
  end
  return false, false
end

-- (in the job's buffer) is the job's last write still in effect? An undo, `g-` or
-- `:undo N` past it, or an undo followed by new edits (another branch), says no.
local function in_effect(job)
  local cur = vim.fn.changenr()
  if cur == job.seq then
    return true
  end
  local tree = vim.fn.undotree(job.buf)
  if tree.seq_cur == 0 then
    return false
  end
  local found, yes = on_path(tree.entries, tree.seq_cur, job.seq, false)
  return found and yes
end

-- A change by anyone else in a buffer with jobs: check them once the change is done.
local checking = {}
local writing = false

local function check_buffer(buf)
  checking[buf] = nil
  if not api.nvim_buf_is_valid(buf) then
    return
  end
  for id, job in pairs(M.jobs) do
    if job.buf == buf and not job.done and not job.stopping then
      if job.written then
        local live = api.nvim_buf_call(buf, function()
          return in_effect(job)
        end)
        if not live then
          job.undone = true
          M.stop(id, 'cancelled', M.UNDONE)
        end
      elseif M.region_changed(job.region) then
        M.stop(id, 'cancelled', M.CHANGED)
      end
    end
  end
end

local attached = {}

local function watch_buffer(buf)
  if attached[buf] then
    return
  end
  attached[buf] = true
  api.nvim_buf_attach(buf, false, {
    on_lines = function()
      if running_in(buf) == 0 then
        attached[buf] = nil
        return true -- detach
      end
      if not writing and not checking[buf] then
        checking[buf] = true
        vim.schedule(function()
          check_buffer(buf)
        end)
      end
    end,
    on_detach = function()
      attached[buf] = nil
    end,
  })
end

-- the job's life ---------------------------------------------------------------------

M.UNDONE = 'undone while streaming; the rest of the answer was dropped'
M.CHANGED = 'the selected text was changed before the answer came; nothing was replaced'
M.DELETED = 'the answer was deleted while streaming; the rest was dropped'
M.REJECTED = 'rejected while streaming; the original is back'

--- Start tracking a generation at `region` (from M.capture). opts.replace: the region
--- is a selection to replace; opts.placement: where a point region writes ('cursor',
--- 'line' = on a blank line or below it, 'below', 'above').
function M.new(buf, region, opts)
  next_id = next_id + 1
  local id = next_id
  local job = {
    id = id,
    buf = buf,
    region = region,
    replace = opts.replace,
    follow = opts.follow,
    review = opts.replace and opts.review and region.kind == 'range' or nil,
    placement = opts.placement == 'auto' and 'line' or opts.placement or 'cursor',
    auto = opts.placement == 'auto', -- the preset decides (resolve())
    label = opts.label or 'kznllm',
    started = vim.uv.hrtime(),
    written = false,
    chars = 0,
    on_done = opts.on_done, -- called with the status once the job ends
  }
  job.preset, job.model = preset_and_model(opts)
  resolve(job)
  if opts.replace then
    -- the selection stays until the first token replaces it: a request that fails
    -- before then leaves the buffer exactly as it was
    local b = M.bounds(region)
    job.pending = api.nvim_buf_set_extmark(buf, ns, b[1], b[2], {
      end_row = b[3],
      end_col = b[4],
      hl_group = 'KznllmPending',
      right_gravity = true,
      end_right_gravity = false,
    })
  end
  M.jobs[id] = job
  pcall(vim.cmd, 'redrawstatus!') -- a statusline with require('kznllm').status()
  map_cancel(buf)
  watch_buffer(buf)
  progress_start(job)
  pcall(api.nvim_exec_autocmds, 'User', {
    pattern = 'KznllmStart',
    data = { id = id, bufnr = buf, mode = opts.replace and 'replace' or 'yap' },
  })
  return job
end

-- the end of `lines` written at (row, col)
local function end_of(row, col, lines)
  if #lines == 1 then
    return row, col + #lines[1]
  end
  return row + #lines - 1, #lines[#lines]
end

-- Another job's marks exactly where `job` is about to insert at (r, c): once the text
-- between two places is deleted they can meet, and gravity alone would then put this
-- text inside the other's place (or the other's next text inside this one's).
local function marks_at(job, r, c)
  local found = {}
  for _, other in pairs(M.jobs) do
    if other ~= job and other.buf == job.buf and not other.done then
      local ids = {}
      if other.written then
        ids = { { other.head, false }, { other.tail, true } }
      elseif other.region.kind == 'point' then
        ids = { { other.region.point, false }, { other.region.line, false } }
      end
      for _, x in ipairs(ids) do
        local mr, mc = mark_pos(job.buf, x[1])
        if mr == r and mc == c then
          table.insert(found, x)
        end
      end
    end
  end
  return found
end

-- ... and after it wrote (r, c) .. (er, ec): an answer that ended there still ends
-- before this text; one that started (or writes) there starts after it.
local function keep_out(found, buf, r, c, er, ec)
  for _, x in ipairs(found) do
    local tail = x[2]
    api.nvim_buf_set_extmark(buf, ns, tail and r or er, tail and c or ec, {
      id = x[1],
      right_gravity = tail,
    })
  end
end

-- where a point region writes now, and the lines to write there: the answer's text
-- starts after `skip` of them (a new line below); above, a line break follows it
local function point_target(job, lines)
  local r = job.region
  if job.placement == 'cursor' then
    local p = api.nvim_buf_get_extmark_by_id(job.buf, ns, r.point, {})
    return p[1], p[2], p[1], p[2], lines, 0
  end
  local row = api.nvim_buf_get_extmark_by_id(job.buf, ns, r.line, {})[1]
  local len = line_len(job.buf, row) or 0
  if job.placement == 'above' then
    local out = vim.list_extend({}, lines)
    table.insert(out, '')
    return row, 0, row, 0, out, 0
  end
  if job.placement == 'line' and blank_line(job.buf, row, len) then
    return row, len, row, len, lines, 0
  end
  local out = { '' }
  vim.list_extend(out, lines)
  return row, len, row, len, out, 1
end

local function first_write(job, lines)
  local buf = job.buf
  local r = job.region
  local sr, sc
  if r.kind == 'point' then
    local er, ec, out, skip
    sr, sc, er, ec, out, skip = point_target(job, lines)
    local found = marks_at(job, sr, sc)
    api.nvim_buf_set_text(buf, sr, sc, er, ec, out)
    keep_out(found, buf, sr, sc, end_of(sr, sc, out))
    if skip > 0 then
      sr, sc = sr + skip, 0
    end
  else
    local s = spans(r)
    if r.kind == 'block' then
      -- remove the block's columns, bottom up, then write at its top-left corner
      for i = #s, 1, -1 do
        local x = s[i]
        if x[4] > x[2] then
          api.nvim_buf_set_text(buf, x[1], x[2], x[3], x[4], { '' })
        end
      end
      sr, sc = s[1][1], s[1][2]
      api.nvim_buf_set_text(buf, sr, sc, sr, sc, lines)
    else
      local x = s[1]
      local er, ec = x[3], x[4]
      if r.nl then -- up to the end of the last selected line, not its line break
        er = er - 1
        ec = line_len(buf, er) or 0
      end
      sr, sc = x[1], x[2]
      api.nvim_buf_set_text(buf, sr, sc, er, ec, lines)
    end
  end
  local tr, tc = end_of(sr, sc, lines)
  job.head = api.nvim_buf_set_extmark(buf, ns, sr, sc, { right_gravity = false })
  job.tail = api.nvim_buf_set_extmark(buf, ns, tr, tc, { right_gravity = true })
  if job.pending then
    pcall(api.nvim_buf_del_extmark, buf, ns, job.pending)
    job.pending = nil
  end
  if job.review then
    -- the text the answer replaced, as it was at the keypress (now gone from the buffer)
    local original = r.nl and r.text:sub(1, -2) or r.text
    require('kznllm.review').open(job.id, buf, { sr, sc, tr, tc }, original)
  end
  M.release(r)
end

-- the buffer's last change, when it was a write of ours: { tick, job }
local last_write = {}

--- The buffer's last change is now a write of `job` (the undo step later writes join,
--- and where undo detection starts from).
local function wrote(job)
  if job.held then
    require('kznllm.stream_highlight').wrote(job.buf)
  end
  job.seq = vim.fn.changenr()
  last_write[job.buf] =
    { tick = api.nvim_buf_get_changedtick(job.buf), job = job.id, time = vim.uv.hrtime() }
end

--- Keep the windows of a scratch buffer at the end of the stream while their cursor
--- is there (one that the user moved up stays where it is).
local function follow(job)
  local last = api.nvim_buf_line_count(job.buf)
  for _, win in ipairs(vim.fn.win_findbuf(job.buf)) do
    if api.nvim_win_get_cursor(win)[1] >= (job.followed or 1) then
      pcall(api.nvim_win_set_cursor, win, { last, 0 })
    end
  end
  job.followed = last
end

local function write_now(job, text)
  local buf = job.buf
  local lines = vim.split(text, '\n', { plain = true })
  api.nvim_buf_call(buf, function()
    local tick = api.nvim_buf_get_changedtick(buf)
    local last = last_write[buf]
    -- join the undo step when the buffer's last change is a write of this job or of
    -- one streaming at the same time (still running, or written since this one
    -- started); anything else in between (an edit, an undo) starts a step of its own
    local other = last and M.jobs[last.job]
    local joined = last
      and last.tick == tick
      and (last.job == job.id or (other and not other.done) or last.time >= job.started)
    if job.written then
      if not joined and not in_effect(job) then
        job.undone = true -- write no more, anywhere
        return
      end
      local hr, hc = mark_pos(buf, job.head)
      local tr, tc = mark_pos(buf, job.tail)
      if job.chars > 0 and hr == tr and hc == tc then
        job.deleted = true
        return
      end
    end
    if joined then
      pcall(vim.cmd, 'undojoin')
    else
      vim.o.undolevels = vim.o.undolevels -- a new undo step (see :help undo-break)
    end
    writing = true
    local ok, err = pcall(function()
      if not job.written then
        job.held = require('kznllm.stream_highlight').hold(buf)
        first_write(job, lines)
        job.written = true
      else
        local r, c = mark_pos(buf, job.tail)
        local found = marks_at(job, r, c)
        api.nvim_buf_set_text(buf, r, c, r, c, lines)
        keep_out(found, buf, r, c, end_of(r, c, lines))
      end
    end)
    writing = false
    if not ok then
      error(err, 0)
    end
    wrote(job)
    job.chars = job.chars + #text
    job.wrote_at = vim.uv.hrtime()
  end)
  if job.follow then
    follow(job)
  end
end

--- From the host at the end of a replace: the whole answer becomes `text` (a chatty
--- answer cut down to its code), in the answer's undo step.
function M.rewrite(id, text)
  local job = M.jobs[id]
  if not job or job.done or job.stopping or not job.written or job.undone then
    return
  end
  if not api.nvim_buf_is_valid(job.buf) then
    return
  end
  local buf = job.buf
  api.nvim_buf_call(buf, function()
    local last = last_write[buf]
    if last and last.job == id and last.tick == api.nvim_buf_get_changedtick(buf) then
      pcall(vim.cmd, 'undojoin')
    end
    local hr, hc = mark_pos(buf, job.head)
    local tr, tc = mark_pos(buf, job.tail)
    writing = true
    pcall(api.nvim_buf_set_text, buf, hr, hc, tr, tc, vim.split(text, '\n', { plain = true }))
    writing = false
    wrote(job)
    job.chars = #text
  end)
end

--- A note from the host shown with the progress (a retry's wait), until the text comes.
function M.note(id, text)
  local job = M.jobs[id]
  if not job or job.done then
    return
  end
  job.note = text
  progress_update(job)
end

--- Called by the host with each coalesced batch of text, and the tokens of all the text
--- so far (its estimate: the progress and the sidebar show it).
function M.write(id, text, tokens)
  require('kznllm.host').heard()
  local job = M.jobs[id]
  if not job or job.done or job.stopping then
    return
  end
  resolve(job) -- before the first text: where 'auto' puts it
  job.tokens = tokens or job.tokens
  if not api.nvim_buf_is_valid(job.buf) then
    return M.stop(id, 'cancelled', 'the buffer was closed')
  end
  if not job.written and M.region_changed(job.region) then
    return M.stop(id, 'cancelled', M.CHANGED)
  end
  local ok, err = pcall(write_now, job, text)
  require('kznllm.pace').wrote(id)
  if not ok then
    -- one clean line: no "Error executing lua", file positions or traceback
    local why = tostring(err)
      :gsub('\nstack traceback:.*', '')
      :gsub('Error executing lua: ', '')
      :gsub('[^%s]+%.lua:%d+: ', '')
    M.stop(id, 'error', 'could not write to the buffer: ' .. why)
  elseif job.undone then
    M.stop(id, 'cancelled', M.UNDONE)
  elseif job.deleted then
    M.stop(id, 'cancelled', M.DELETED)
  end
end

local LEVELS = { info = vim.log.levels.INFO, warn = vim.log.levels.WARN }

--- The line that ends a job: the host's (kznllm_py/messages.py), unless the editor
--- ended it itself (an undo, a change, the watchdog): then its reason.
local function end_message(job, status, err, info)
  if info and info.message and not job.stop_reason then
    return 'kznllm: ' .. info.message, LEVELS[info.level] or vim.log.levels.ERROR
  end
  local kept = job.written and ' (partial output kept)' or ' (buffer unchanged)'
  if err == M.UNDONE or err == M.CHANGED or err == M.DELETED or err == M.REJECTED then
    kept = '' -- the message says what became of the text
  end
  if status == 'cancelled' then
    return 'kznllm: cancelled' .. (err and (': ' .. err) or '') .. kept, vim.log.levels.WARN
  end
  return 'kznllm: ' .. (err or 'failed') .. kept, vim.log.levels.ERROR
end

--- The end of a job, from the host (status 'ok'|'error'|'cancelled') or from the editor.
function M.finish(id, status, err, info)
  require('kznllm.host').heard()
  if err == vim.NIL then
    err = nil
  end
  if info == vim.NIL then
    info = nil
  end
  local job = M.jobs[id]
  if not job or job.done then
    return
  end
  job.done = true
  M.jobs[id] = nil
  require('kznllm.pace').forget(id)
  if job.ack_timer then
    job.ack_timer:stop()
    job.ack_timer:close()
    job.ack_timer = nil
  end
  local buf = job.buf
  if job.stop_reason then
    status, err = job.stop_reason[1], job.stop_reason[2]
  end
  job.preset = info and info.preset or job.preset
  progress_stop(job, status, info and info.usage)
  if api.nvim_buf_is_valid(buf) then
    if job.pending then
      pcall(api.nvim_buf_del_extmark, buf, ns, job.pending)
    end
    M.release(job.region)
    local undone = err == M.UNDONE or err == M.DELETED or err == M.REJECTED
    if status ~= 'ok' and job.written and not undone then
      -- mark partial output: a note at its end, until the next fill or :KznClear
      local ok, pos = pcall(api.nvim_buf_get_extmark_by_id, buf, ns, job.tail, {})
      if ok and pos[1] then
        local marked, mark = pcall(api.nvim_buf_set_extmark, buf, ns, pos[1], pos[2], {
          virt_text = { { ' ⚠ kznllm: partial output (' .. status .. ')', 'KznllmPartial' } },
          virt_text_pos = 'eol',
        })
        if marked then -- `u` that takes the text back takes the note too
          require('kznllm.partial_mark').until_undone(buf, ns, mark, job.seq)
        end
      end
    end
    pcall(api.nvim_buf_del_extmark, buf, ns, job.head)
    pcall(api.nvim_buf_del_extmark, buf, ns, job.tail)
    unmap_cancel(buf)
  end
  if job.held then
    require('kznllm.stream_highlight').release(buf)
  end
  pcall(vim.cmd, 'redrawstatus!') -- no stale spinner in a statusline
  local msg, level = end_message(job, status, err, info)
  local notable = info and (info.finish_reason == 'length' or info.skipped_files)
  if job.quiet then
    -- ended with others by the watchdog, which says so once for all of them
    vim.api.nvim_echo({ { msg } }, true, {})
  elseif status ~= 'ok' or notable or config.options.notify_done then
    notify(msg, level)
  else
    require('kznllm.notify').routine(msg) -- kept in :messages, for its timings
  end
  if info and info.notice then
    M.notice_once(info.notice)
  end
  local data = { id = id, bufnr = buf, status = status, chars = job.chars, entry = job.entry_id }
  if err then
    data.error = err
  end
  if info and info.usage then
    data.usage = info.usage
  end
  if info and info.writes then
    -- how the answer went in: buffer writes, and the pace they settled at
    data.writes, data.pace_ms = info.writes, info.pace_ms
  end
  if job.on_done then
    pcall(job.on_done, status, info)
  end
  pcall(api.nvim_exec_autocmds, 'User', { pattern = 'KznllmDone', data = data })
end

--- From the host: the history entry recording job `id`. A conversation buffer (debug
--- view, history entry, re-run) continues from the entry its last answer went to.
function M.entry(id, entry_id, buf)
  local job = M.jobs[id]
  if job then
    job.entry_id = entry_id
  end
  if buf and api.nvim_buf_is_valid(buf) and vim.b[buf].kznllm_conversation then
    vim.b[buf].kznllm_entry = entry_id
  end
end

--- A notice shown once per install (a flag file in the data dir remembers it).
function M.notice_once(text)
  local flag = vim.fn.stdpath('data') .. '/kznllm/demo-notice-shown'
  if vim.fn.filereadable(flag) == 1 then
    return
  end
  vim.fn.mkdir(vim.fn.fnamemodify(flag, ':h'), 'p')
  vim.fn.writefile({ os.date('%Y-%m-%d') }, flag)
  notify(text, vim.log.levels.WARN)
end

--- Stop a job from the editor side: no more writes land, the host is told to cancel.
function M.stop(id, status, reason)
  local job = M.jobs[id]
  if not job or job.done or job.stopping then
    return
  end
  job.stopping = true
  job.stop_reason = { status, reason }
  local host = require('kznllm.host')
  if not job.chan or job.chan ~= host.chan then
    return M.finish(id, status, reason) -- its host is gone: nothing to wait for
  end
  pcall(host.notify, 'cancel', { id = id })
  -- the watchdog: a host that does not end the job within a second is wedged (one
  -- still starting, that has not said a word yet, gets its startup time)
  local limit = host.alive() and host.limits().cancel or host.limits().startup
  job.ack_timer = vim.uv.new_timer()
  job.ack_timer:start(
    math.floor(limit * 1000),
    0,
    vim.schedule_wrap(function()
      if not job.done then
        host.wedged(job.chan, ('did not answer a cancel within %g s'):format(limit))
      end
    end)
  )
end

-- a buffer that goes away takes its streams with it
api.nvim_create_autocmd({ 'BufUnload', 'BufWipeout' }, {
  group = api.nvim_create_augroup('kznllm_jobs', { clear = true }),
  callback = function(ev)
    for id, job in pairs(M.jobs) do
      if job.buf == ev.buf then
        M.stop(id, 'cancelled', 'the buffer was closed')
      end
    end
  end,
})

function M.cancel_buffer(buf)
  local n = 0
  for id, job in pairs(M.jobs) do
    if job.buf == buf then
      M.stop(id, 'cancelled', nil)
      n = n + 1
    end
  end
  return n
end

--- The host on channel `chan` exited: its jobs end here.
function M.host_died(chan)
  for id, job in pairs(M.jobs) do
    if job.chan == nil or job.chan == chan then
      M.finish(id, 'error', 'the Python host exited')
    end
  end
end

--- The watchdog found the host on `chan` wedged and killed it: end its jobs in the
--- editor (partial text kept and marked, a selection untouched if nothing came).
--- Returns how many ended, and how many had written text.
function M.end_jobs_of(chan, reason)
  local n, partial = 0, 0
  for id, job in pairs(M.jobs) do
    if job.chan == chan and not job.done then
      n = n + 1
      partial = partial + (job.written and 1 or 0)
      job.quiet = true
      job.stop_reason = nil
      M.finish(id, 'error', reason)
    end
  end
  return n, partial
end

--- Jobs that wait on the host on `chan`.
function M.waiting_on(chan)
  for _, job in pairs(M.jobs) do
    if job.chan == chan and not job.done then
      return true
    end
  end
  return false
end

function M.clear_marks(buf)
  buf = buf or api.nvim_get_current_buf()
  for _, m in ipairs(api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true })) do
    local d = m[4]
    if d and d.virt_text and d.virt_text[1] and d.virt_text[1][2] == 'KznllmPartial' then
      api.nvim_buf_del_extmark(buf, ns, m[1])
    end
  end
end

--- How many jobs run, and when the oldest started (vim.uv.hrtime()).
function M.running()
  local n, oldest = 0, nil
  for _, job in pairs(M.jobs) do
    if not job.done then
      n = n + 1
      oldest = math.min(oldest or job.started, job.started)
    end
  end
  return n, oldest
end

return M
