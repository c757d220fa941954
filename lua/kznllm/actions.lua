-- What the commands and keys do: capture what the editor knows (mode, selection,
-- context) as extmarks, ask the query, start the job; presets, the sidebar toggle and
-- the statusline string. Loaded on first use (init.lua holds setup()); the Python host
-- owns presets, prompts, HTTP and streaming.
local M = {}

local api = vim.api
local notify = require('kznllm.notify').notify
local config = require('kznllm.config')

-- the other modules load on first use, not at startup (setup() adds ~nothing to it)
local function lazy(name)
  return setmetatable({}, {
    __index = function(_, key)
      return require(name)[key]
    end,
  })
end
local job = lazy('kznllm.job')
local host = lazy('kznllm.host')
local sidebar = lazy('kznllm.sidebar')

local state_file = vim.fn.stdpath('data') .. '/kznllm/preset'
M.state = { preset = nil } -- the choice made with :KznPreset (saved), read once

local function read_saved_preset()
  local ok, lines = pcall(vim.fn.readfile, state_file)
  if ok and lines[1] and lines[1] ~= '' then
    return lines[1]
  end
  return false
end

--- The preset in use: the one picked with :KznPreset (remembered across restarts),
--- else setup()'s `preset`, else nil (the host picks the default).
function M.current_preset()
  if M.state.preset == nil then
    M.state.preset = read_saved_preset()
  end
  return M.state.preset or config.options.preset
end

-- selection and context ---------------------------------------------------------------

local function line_len(buf, row)
  return #api.nvim_buf_get_lines(buf, row, row + 1, true)[1]
end

--- The range to replace for visual `mode` between positions `a` and `b` (getpos()).
--- Returns { srow, scol, erow, ecol } 0-based end-exclusive, and for blockwise a list of
--- per-line { row, scol, ecol }. The end of line is not part of a charwise selection.
function M.region(buf, mode, a, b)
  if mode == 'V' then
    local s, e = math.min(a[2], b[2]) - 1, math.max(a[2], b[2]) - 1
    return { s, 0, e, line_len(buf, e) }, nil
  end
  local regions
  if vim.fn.exists('*getregionpos') == 1 then
    regions = vim.fn.getregionpos(a, b, { type = mode, eol = false })
  else -- Neovim 0.10: rows between the two positions, same byte columns for a block
    if a[2] > b[2] or (a[2] == b[2] and a[3] > b[3]) then
      a, b = b, a
    end
    regions = {}
    for lnum = a[2], b[2] do
      local s = (mode == 'v' and lnum > a[2]) and 1 or math.min(a[3], b[3])
      local e = (mode == 'v' and lnum < b[2]) and line_len(buf, lnum - 1)
        or (mode == 'v' and b[3] or math.max(a[3], b[3]))
      if mode == 'v' and lnum == a[2] then
        s = a[3]
      end
      table.insert(regions, { { 0, lnum, s, 0 }, { 0, lnum, e, 0 } })
    end
  end
  local rows = {}
  for _, r in ipairs(regions) do
    local row = r[1][2] - 1
    local len = line_len(buf, row)
    local line = api.nvim_buf_get_lines(buf, row, row + 1, true)[1]
    local s = math.min(r[1][3] - 1, len)
    local e = r[2][3] -- 1-based inclusive byte of the last char's first byte
    if e >= 1 and e <= len then
      e = e + vim.str_utf_end(line, e) -- through the last byte of a multibyte char
    end
    e = math.min(math.max(e, s), len)
    table.insert(rows, { row, s, e })
  end
  local first, last = rows[1], rows[#rows]
  if mode == 'v' then
    return { first[1], first[2], last[1], last[3] }, nil
  end
  return { first[1], first[2], last[1], last[3] }, rows
end

--- Yap writes after the character under the cursor (like `a`), whole even if multibyte.
function M.after_cursor(buf)
  local row, col = unpack(api.nvim_win_get_cursor(0))
  row = math.max(row, 1) -- 0 in a startup `-c` command, before the buffer is shown
  local line = api.nvim_buf_get_lines(buf, row - 1, row, true)[1] or ''
  if #line > 0 then
    col = math.min(col + 1 + vim.str_utf_end(line, col + 1), #line)
  end
  return { row - 1, col, row - 1, col }
end

-- the host keeps prompts.CONTEXT_CAP characters each side of the selection or cursor:
-- no more cross the RPC; each is at most 4 bytes, so this many bytes are read to find them
local CONTEXT_CHARS = 24000
local CONTEXT_BYTES = 4 * CONTEXT_CHARS

--- The last row in [lo, hi] whose start is at or before byte offset `target`.
local function row_at(buf, lo, hi, target)
  while lo < hi do
    local mid = math.floor((lo + hi + 1) / 2)
    if api.nvim_buf_get_offset(buf, mid) <= target then
      lo = mid
    else
      hi = mid - 1
    end
  end
  return lo
end

--- The position `cap` bytes before (row, col), not before (from, 0), at a character's
--- start (buffer offsets: no text is read to find it).
local function back_by(buf, from, row, col, cap)
  local target = api.nvim_buf_get_offset(buf, row) + col - cap
  if target <= api.nvim_buf_get_offset(buf, from) then
    return from, 0
  end
  local lo = row_at(buf, from, row, target)
  local c = target - api.nvim_buf_get_offset(buf, lo)
  local line = line_len(buf, lo)
  if c >= line then
    return lo + 1, 0
  end
  local text = api.nvim_buf_get_text(buf, lo, c, lo, math.min(line, c + 4), {})[1] or ''
  local skip = 0 -- continuation bytes of a character that starts before target
  while skip < #text and text:byte(skip + 1) >= 0x80 and text:byte(skip + 1) < 0xC0 do
    skip = skip + 1
  end
  return lo, c + skip
end

--- The position `cap` bytes after (row, col), not past (to, end of line), at a
--- character's start.
local function ahead_by(buf, to, row, col, cap)
  local last = line_len(buf, to)
  local target = api.nvim_buf_get_offset(buf, row) + col + cap
  if target >= api.nvim_buf_get_offset(buf, to) + last then
    return to, last
  end
  local lo = row_at(buf, row, to, target)
  local c = math.min(target - api.nvim_buf_get_offset(buf, lo), line_len(buf, lo))
  local text = api.nvim_buf_get_text(buf, lo, math.max(0, c - 3), lo, c, {})[1] or ''
  -- back to the start of a character the cut would split
  local i = #text
  while i > 0 and text:byte(i) >= 0x80 and text:byte(i) < 0xC0 do
    i = i - 1
  end
  if i > 0 and text:byte(i) >= 0xC0 then
    local need = text:byte(i) >= 0xF0 and 4 or text:byte(i) >= 0xE0 and 3 or 2
    if #text - i + 1 < need then
      c = c - (#text - i + 1)
    end
  end
  return lo, c
end

local remember_source -- below, with :KznApply

local function context(buf, range)
  local n = config.options.context_lines
  local from = math.max(0, range[1] - n)
  local last = api.nvim_buf_line_count(buf) - 1
  local to = math.min(last, range[3] + n)
  local br, bc = back_by(buf, from, range[1], range[2], CONTEXT_BYTES)
  local ar, ac = ahead_by(buf, to, range[3], range[4], CONTEXT_BYTES)
  local before = table.concat(api.nvim_buf_get_text(buf, br, bc, range[1], range[2], {}), '\n')
  local after = table.concat(api.nvim_buf_get_text(buf, range[3], range[4], ar, ac, {}), '\n')
  -- then exactly the characters the host keeps (C-speed counting, no Lua loop)
  local n = vim.str_utfindex(before, 'utf-32')
  if n > CONTEXT_CHARS then
    before = before:sub(vim.str_byteindex(before, 'utf-32', n - CONTEXT_CHARS) + 1)
  end
  if vim.str_utfindex(after, 'utf-32') > CONTEXT_CHARS then
    after = after:sub(1, vim.str_byteindex(after, 'utf-32', CONTEXT_CHARS))
  end
  return before, after
end

-- filling -----------------------------------------------------------------------------

--- Start a generation. spec = { query, replace = bool, range = {..}, block = {..}, buf }
--- The debug view's scratch buffer, in a split on the right.
local function debug_buffer()
  local name = ('kznllm://debug/%d'):format(vim.uv.hrtime() % 1e9)
  local buf = sidebar.scratch(name, 'botright vsplit')
  vim.b[buf].kznllm_debug = true -- its request can be edited and sent (:KznSend)
  return buf
end

--- Fold the debug view's reasoning (between its "## Reasoning" and "## Answer"
--- headings) once the answer is in: `za` opens it.
local function fold_reasoning(buf)
  if not api.nvim_buf_is_valid(buf) then
    return
  end
  local lines = api.nvim_buf_get_lines(buf, 0, -1, false)
  local from, to
  for i, line in ipairs(lines) do
    if not from and line == '## Reasoning' then
      from = i
    elseif from and line == '## Answer' then
      to = i - 1
      break
    end
  end
  if not from then
    return
  end
  to = to or #lines
  for _, win in ipairs(vim.fn.win_findbuf(buf)) do
    api.nvim_win_call(win, function()
      vim.wo.foldmethod = 'manual'
      vim.wo.foldenable = true
      pcall(vim.cmd, ('%d,%dfold'):format(from, math.max(from, to)))
    end)
  end
end

local PLACEMENTS =
  { auto = true, cursor = true, below = true, above = true, split = true, tab = true }

--- Where a normal-mode answer goes: the current preset's `placement`, else setup()'s.
function M.placement()
  local id = M.current_preset()
  for _, p in ipairs(config.options.presets or {}) do
    if type(p) == 'table' and p.id == id and p.placement and p.placement ~= '' then
      return p.placement
    end
  end
  return config.options.placement or 'auto'
end

--- Why `buf` cannot take an answer, or nil.
local function unwritable(buf)
  if vim.bo[buf].buftype == 'terminal' then
    return 'a terminal buffer cannot take an answer'
  end
  if not vim.bo[buf].modifiable then
    return "this buffer cannot take an answer ('modifiable' is off)"
  end
  return nil
end

local function refuse(region, msg, level)
  job.release(region)
  notify('kznllm: ' .. msg, level or vim.log.levels.ERROR)
end

local BUSY = 'another answer is streaming there (<Esc> cancels it); nothing was sent'

--- Capture the region `spec` writes to (a selection, or the insertion point), now.
local function capture(buf, spec)
  if spec.replace then
    if spec.block then
      return job.capture(buf, { kind = 'block', rows = spec.block })
    end
    return job.capture(buf, { kind = 'range', range = spec.range, linewise = spec.linewise })
  end
  local p = spec.range or M.after_cursor(buf)
  return job.capture(buf, { kind = 'point', row = p[1], col = p[2], placement = spec.placement })
end

-- the scratch buffer an answer goes to with placement 'split' or 'tab'
local function answer_buffer(src, placement)
  local name = ('kznllm://answer/%d'):format(vim.uv.hrtime() % 1e9)
  local buf = sidebar.scratch(name, placement == 'tab' and 'tab split' or 'botright vsplit')
  local ft = vim.bo[src].filetype
  vim.bo[buf].filetype = ft ~= '' and ft or 'markdown'
  return buf
end

local function scratch_placement(spec)
  return not spec.replace and (spec.placement == 'split' or spec.placement == 'tab')
end

function M.start(spec)
  local buf = spec.buf or api.nvim_get_current_buf()
  local cursor = spec.cursor or api.nvim_win_get_cursor(0)
  if not spec.replace and not spec.placement then
    spec.placement = spec.range and 'cursor' or M.placement()
  end
  local to_scratch = spec.debug or scratch_placement(spec)
  local region = spec.region or capture(buf, spec)
  if not to_scratch and unwritable(buf) then
    return refuse(region, unwritable(buf) .. '; nothing was sent')
  end
  if job.region_changed(region) then
    return refuse(
      region,
      'the selected text was changed before the request went out; nothing was sent',
      vim.log.levels.WARN
    )
  end
  if not to_scratch and job.overlapping(buf, job.bounds(region)) then
    return refuse(region, BUSY)
  end
  job.clear_marks(buf)
  local selection = spec.replace and job.selection(region) or ''
  local before, after = context(buf, job.text_bounds(region))
  local preset = spec.preset or M.current_preset()
  local target, placement = buf, spec.placement
  local source = region
  if to_scratch then
    -- the answer goes to a scratch buffer (with the request first, in the debug view);
    -- the source is untouched
    target = spec.debug and debug_buffer() or answer_buffer(buf, spec.placement)
    if spec.replace then
      remember_source(target, buf, source) -- :KznApply there puts the answer in its place
    else
      job.release(source)
    end
    region = job.capture(target, { kind = 'point', row = 0, col = 0, placement = 'cursor' })
    placement = 'cursor'
  end
  local review = spec.replace and not spec.debug and (spec.review or config.options.review) or false
  local j = job.new(target, region, {
    -- the window of a scratch buffer (debug view, follow-up, split/tab answer) follows
    -- the stream, unless the user moves away from its end
    follow = to_scratch or vim.b[target].kznllm_conversation or false,
    replace = spec.replace and not spec.debug,
    review = review,
    placement = placement == 'auto' and 'line' or placement,
    label = 'kznllm' .. (preset and (' ' .. preset) or ''),
    on_done = spec.debug and function()
      fold_reasoning(target)
    end or nil,
  })
  -- only what is new: the host has the settings (host.configure); a dot-repeat keeps
  -- the preset it was made with
  local ok, err = pcall(host.notify, 'fill', {
    preset = preset or vim.NIL,
    id = j.id,
    bufnr = target,
    debug = spec.debug or false,
    mode = spec.replace and 'replace' or 'yap',
    linewise = (spec.linewise and not spec.debug) or false,
    placement = (not spec.replace and not to_scratch) and spec.placement or nil,
    spot = (not spec.replace and not to_scratch) and job.spot(region) or nil,
    query = spec.query,
    selection = selection,
    filetype = vim.bo[buf].filetype,
    fileformat = vim.bo[target].fileformat,
    path = api.nvim_buf_get_name(buf),
    before = before,
    after = after,
    cursor = cursor,
    cwd = vim.fn.getcwd(),
    followup = spec.followup,
    rerun = spec.rerun,
    send = spec.send,
    review = j.review or false,
  })
  if not ok then
    job.finish(j.id, 'error', tostring(err))
  else
    j.chan = host.chan
    host.watch()
  end
  return j.id
end

local function streaming_in(buf)
  for _, j in pairs(job.jobs) do
    if j.buf == buf and not j.done then
      return true
    end
  end
  return false
end

-- :KznApply -------------------------------------------------------------------------

--- scratch buffer -> { buf, region }: the selection a debug view's replace was asked
--- about, tracked by its extmarks while both buffers live
local sources = {}

remember_source = function(scratch, buf, region)
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
  if streaming_in(scratch) then
    return notify('kznllm: the answer is still streaming here', vim.log.levels.WARN)
  end
  M.applying = scratch
  host.notify('history_entry', { id = entry, action = 'apply' })
end

--- The end of `buf`, where a follow-up's answer goes.
local function buffer_end(buf)
  local last = api.nvim_buf_line_count(buf) - 1
  local len = line_len(buf, last)
  return { last, len, last, len }
end

--- A follow-up in a conversation buffer (debug view, history entry, re-run): the
--- earlier turns are sent as messages, the answer goes below.
local function follow_up(buf, opts)
  if streaming_in(buf) then
    return notify('kznllm: an answer is still streaming here (<Esc> cancels it)')
  end
  local entry = vim.b[buf].kznllm_entry
  if not entry then
    return notify(
      'kznllm: nothing to follow up here: the history has no entry for this buffer'
        .. ' (follow-ups need setup({ history = true }))',
      vim.log.levels.ERROR
    )
  end
  local spec = { buf = buf, query = opts.query, followup = entry }
  local function go(q)
    if q and q ~= '' then
      spec.query = q
      spec.range = buffer_end(buf)
      M.start(spec)
    end
  end
  pcall(host.ensure)
  if spec.query and spec.query ~= '' then
    return go(spec.query)
  end
  vim.ui.input({ prompt = 'kznllm follow-up: ' }, go)
end

--- :KznSend in a debug view: send the request as the view shows it now (the user may
--- have edited its model, parameters, system and messages); the answer streams below.
function M.send()
  local buf = api.nvim_get_current_buf()
  if not vim.b[buf].kznllm_debug then
    return notify('kznllm: :KznSend works in a debug view (:KznDebug)', vim.log.levels.ERROR)
  end
  if streaming_in(buf) then
    return notify('kznllm: an answer is still streaming here (<Esc> cancels it)')
  end
  local text = table.concat(api.nvim_buf_get_lines(buf, 0, -1, true), '\n')
  pcall(host.ensure)
  M.start({ buf = buf, query = '', send = text, range = buffer_end(buf) })
end

--- Re-run history entry `id` with the current preset, into a scratch buffer (made by
--- `scratch(name)`, default a new split).
function M.rerun(id, scratch)
  local buf = (scratch or sidebar.scratch)(
    ('kznllm://rerun/%d-%d'):format(id, vim.uv.hrtime() % 1e6)
  )
  return M.start({ buf = buf, query = '', rerun = id, range = { 0, 0, 0, 0 } })
end

--- What the mapping and :KznFill do: capture the selection (or the insertion point)
--- as extmarks now, in the tick of the keypress, then ask the query, then start.
function M.prompt_fill(opts)
  local buf = api.nvim_get_current_buf()
  local spec = {
    buf = buf,
    query = opts.query,
    debug = opts.debug,
    preset = opts.preset,
    review = opts.review,
  }
  local mode = opts.mode
  local visual = mode == 'v'
    or mode == 'V'
    or mode == '\22'
    or opts.line1
    or opts.marks
    or opts.span
  if vim.b[buf].kznllm_conversation and not visual and not opts.debug then
    return follow_up(buf, opts)
  end
  spec.cursor = api.nvim_win_get_cursor(0)
  if mode == 'v' or mode == 'V' or mode == '\22' then
    local a, b = vim.fn.getpos('v'), vim.fn.getpos('.')
    api.nvim_feedkeys(api.nvim_replace_termcodes('<Esc>', true, false, true), 'nx', false)
    spec.replace = true
    spec.linewise = mode == 'V'
    spec.range, spec.block = M.region(buf, mode, a, b)
  elseif opts.line1 then
    spec.replace = true
    spec.linewise = true
    spec.range = { opts.line1 - 1, 0, opts.line2 - 1, line_len(buf, opts.line2 - 1) }
  elseif opts.span then
    -- an operator's motion: { visual mode, start, end } as getpos() gives them
    spec.replace = true
    spec.linewise = opts.span[1] == 'V'
    spec.range, spec.block = M.region(buf, opts.span[1], opts.span[2], opts.span[3])
  elseif opts.marks then
    -- :'<,'>KznFill right after a visual selection: use its exact extent
    local vmode = vim.fn.visualmode()
    spec.replace = true
    spec.linewise = vmode == 'V'
    spec.range, spec.block = M.region(buf, vmode, vim.fn.getpos("'<"), vim.fn.getpos("'>"))
  else
    spec.placement = M.placement()
    if not PLACEMENTS[spec.placement] then
      return notify(
        ('kznllm: unknown placement %q (auto, cursor, below, above, split or tab)'):format(
          spec.placement
        ),
        vim.log.levels.ERROR
      )
    end
  end
  local to_scratch = spec.debug or scratch_placement(spec)
  local why = not to_scratch and unwritable(buf)
  if why then
    return notify('kznllm: ' .. why .. '; nothing was sent', vim.log.levels.ERROR)
  end
  spec.region = capture(buf, spec)
  if not to_scratch and job.overlapping(buf, job.bounds(spec.region)) then
    return refuse(spec.region, BUSY)
  end
  pcall(host.ensure) -- start the host while the user types the query
  if spec.query and spec.query ~= '' then
    return M.start(spec)
  end
  local prompt = (spec.debug and 'kznllm debug' or 'kznllm')
    .. (spec.replace and ' (replace): ' or ': ')
  vim.ui.input({ prompt = prompt }, function(q)
    if q and q ~= '' then
      spec.query = q
      if opts.on_query then
        opts.on_query(q)
      end
      M.start(spec)
    else
      job.release(spec.region)
    end
  end)
end

--- :[range]KznFill [query] (and :KznDebug, :KznReview: `extra` = { review = true })
function M.command_fill(cmd, debug, extra)
  local opts = vim.tbl_extend('force', { query = cmd.args, debug = debug }, extra or {})
  if cmd.range > 0 then
    local m1, m2 = api.nvim_buf_get_mark(0, '<'), api.nvim_buf_get_mark(0, '>')
    if m1[1] == cmd.line1 and m2[1] == cmd.line2 and vim.fn.visualmode() ~= 'V' then
      opts.marks = true
    else
      opts.line1, opts.line2 = cmd.line1, cmd.line2
    end
  end
  M.prompt_fill(opts)
end

--- :KznHistory [clear]
function M.history(arg)
  if arg == 'clear' then
    return sidebar.clear()
  elseif arg and arg ~= '' then
    return notify(('kznllm: unknown :KznHistory argument %q'):format(arg), vim.log.levels.ERROR)
  end
  local h = config.options.history
  if h == false or (type(h) == 'table' and h.enabled == false) then
    return notify(
      'kznllm: history is off (setup({ history = true }) turns it on)',
      vim.log.levels.ERROR
    )
  end
  sidebar.toggle()
end

function M.cancel()
  local n = job.cancel_buffer(api.nvim_get_current_buf())
  if n == 0 then
    job.clear_marks()
  end
end

-- presets -----------------------------------------------------------------------------

local function save_preset(id)
  vim.fn.mkdir(vim.fn.fnamemodify(state_file, ':h'), 'p')
  vim.fn.writefile({ id }, state_file)
end

function M.presets()
  return host.request('presets', { current = M.current_preset() or vim.NIL })
end

--- `pick_model` (`:KznPreset!`): then pick the preset's model from its server's list
--- (without `id`: the model of the preset in use).
function M.select_preset(id, pick_model)
  local ok, list = pcall(M.presets)
  if not ok then
    notify('kznllm: ' .. tostring(list), vim.log.levels.ERROR)
    return
  end
  local function choose(p)
    M.state.preset = p.id
    save_preset(p.id)
    sidebar.changed() -- its context shows the preset
    if p.key_present == false then
      -- said now, not at the first fill's failure
      notify(
        ('kznllm: preset %s, but %s is not set: requests will fail until it is'):format(p.id, p.key),
        vim.log.levels.WARN
      )
    else
      notify(('kznllm: preset %s (%s)'):format(p.id, p.description or ''), vim.log.levels.INFO)
    end
    if pick_model then
      require('kznllm.models').pick(p)
    end
  end
  if pick_model and (not id or id == '') then
    id = list.current
  end
  local problems = list.problems or {}
  if id and id ~= '' then
    for _, p in ipairs(list.presets) do
      if p.id == id then
        return choose(p)
      end
    end
    for _, why in ipairs(problems) do -- one of setup()'s, left out: say why
      if why:find(("preset '%s'"):format(id), 1, true) then
        return notify(('kznllm: preset %s was left out: %s'):format(id, why), vim.log.levels.ERROR)
      end
    end
    notify(('kznllm: unknown preset %q'):format(id), vim.log.levels.ERROR)
    return
  end
  -- the picker lists what works; what was left out, and why, is said beside it
  for _, why in ipairs(problems) do
    notify('kznllm: left out: ' .. why, vim.log.levels.WARN)
  end
  vim.ui.select(list.presets, {
    prompt = #problems > 0 and ('kznllm preset (%d left out, see :messages)'):format(#problems)
      or 'kznllm preset',
    format_item = function(p)
      local key = p.key_present == false and ('  (no ' .. p.key .. ')') or ''
      return (p.id == list.current and '● ' or '  ')
        .. p.id
        .. ' — '
        .. (p.description or '')
        .. key
    end,
  }, function(p)
    if p then
      choose(p)
    end
  end)
end

function M.complete_presets(arglead)
  local ok, list = pcall(M.presets)
  if not ok then
    return {}
  end
  local out = {}
  for _, p in ipairs(list.presets) do
    if vim.startswith(p.id, arglead) then
      table.insert(out, p.id)
    end
  end
  return out
end

--- A short string for statuslines: the preset, and while requests run a spinner with
--- the elapsed seconds of the oldest one (and how many run, if more than one).
function M.status()
  local p = M.current_preset() or 'default'
  local n, oldest = job.running()
  if n == 0 then
    return 'kznllm ' .. p
  end
  local frames = { '⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏' }
  local secs = (vim.uv.hrtime() - oldest) / 1e9
  local frame = frames[math.floor(secs * 10) % #frames + 1]
  return ('kznllm %s %s %.1fs%s'):format(p, frame, secs, n > 1 and (' ×' .. n) or '')
end

return M
