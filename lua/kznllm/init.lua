-- kznllm: LLM answers streamed into the buffer. The Lua side only captures what the
-- editor knows (mode, selection, context), asks the query, and applies writes; the
-- Python host owns presets, prompts, HTTP and streaming.
local M = {}

local api = vim.api
local job = require('kznllm.job')
local host = require('kznllm.host')
local sidebar = require('kznllm.sidebar')

M.config = {
  python = nil, -- Python for the host (default: <plugin>/.venv/bin/python, g:python3_host_prog, python3)
  -- starting preset; a :KznPreset choice (remembered) wins; nil: first with a key, else demo
  preset = nil,
  presets = {}, -- user presets: { id, description, provider, base_url, api_key, model, params }
  -- false turns all off, or one key at a time
  keymaps = { fill = '<leader>k', debug = '<leader>K', preset = '<leader>m', cancel = '<Esc>' },
  timeouts = { connect = 10, stall = 60 }, -- seconds
  -- fidget.nvim when installed, else virtual text by the insertion point; false: off;
  -- { message = function(info) return string end } words it (:help kznllm-progress)
  progress = true,
  context_lines = 400, -- buffer lines sent each side of the selection / cursor
  -- record every request in stdpath('data')/kznllm/history.sqlite3; or a table
  -- { enabled = true, max_entries = 10000, max_age_days = nil }
  history = true,
  -- :KznHistory: width, side ('right' | 'left') and keys (see :help kznllm-sidebar)
  sidebar = {},
  -- the host's log, stdpath('log')/kznllm.log: 'debug' | 'info' | 'warn' | 'error' | 'off'
  log = { level = 'info' },
  retries = 3, -- tries for a request turned away (429, 503, 529), before its first token
  max_response_bytes = 1048576, -- answer + reasoning past this many bytes: stopped, kept
}

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
  return M.state.preset or M.config.preset
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', M.config, opts or {})
  if opts and opts.presets then
    M.config.presets = opts.presets -- a list: replace, do not merge by index
  end
  host.python = M.config.python
  if opts and opts.presets and #opts.presets > 0 then
    -- reported now, with the field and the reason, not as an error at first use
    host.check_presets(opts.presets, function(problems)
      for _, p in ipairs(problems) do
        vim.notify('kznllm: ' .. p, vim.log.levels.ERROR)
      end
    end)
  end
  job.config.progress = M.config.progress
  sidebar.config = vim.tbl_deep_extend('force', sidebar.config, M.config.sidebar or {})
  local km = M.config.keymaps or {}
  job.config.cancel_key = km and km.cancel or nil
  if km and km.fill then
    vim.keymap.set('n', km.fill, function()
      M.prompt_fill({ mode = 'n' })
    end, { desc = 'kznllm: answer at the cursor' })
    vim.keymap.set('x', km.fill, function()
      M.prompt_fill({ mode = vim.fn.mode() })
    end, { desc = 'kznllm: replace the selection' })
  end
  if km and km.preset then
    vim.keymap.set('n', km.preset, function()
      M.select_preset()
    end, { desc = 'kznllm: pick the preset' })
  end
  if km and km.debug then
    vim.keymap.set('n', km.debug, function()
      M.prompt_fill({ mode = 'n', debug = true })
    end, { desc = 'kznllm: show the request, then the answer, in a scratch buffer' })
    vim.keymap.set('x', km.debug, function()
      M.prompt_fill({ mode = vim.fn.mode(), debug = true })
    end, { desc = 'kznllm: debug view of a replace request' })
  end
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

local function region_text(buf, range, block)
  if block then
    local parts = {}
    for _, b in ipairs(block) do
      table.insert(parts, api.nvim_buf_get_text(buf, b[1], b[2], b[1], b[3], {})[1] or '')
    end
    return table.concat(parts, '\n')
  end
  return table.concat(api.nvim_buf_get_text(buf, range[1], range[2], range[3], range[4], {}), '\n')
end

local function context(buf, range)
  local n = M.config.context_lines
  local from = math.max(0, range[1] - n)
  local last = api.nvim_buf_line_count(buf) - 1
  local to = math.min(last, range[3] + n)
  local before = api.nvim_buf_get_text(buf, from, 0, range[1], range[2], {})
  local after = api.nvim_buf_get_text(buf, range[3], range[4], to, line_len(buf, to), {})
  return table.concat(before, '\n'), table.concat(after, '\n')
end

-- filling -----------------------------------------------------------------------------

--- Start a generation. spec = { query, replace = bool, range = {..}, block = {..}, buf }
--- The debug view's scratch buffer, in a split on the right.
local function debug_buffer()
  local name = ('kznllm://debug/%d'):format(vim.uv.hrtime() % 1e9)
  return sidebar.scratch(name, 'botright vsplit')
end

--- Fold the debug view's reasoning (between its "### Reasoning" and "### Answer"
--- headings) once the answer is in: `za` opens it.
local function fold_reasoning(buf)
  if not api.nvim_buf_is_valid(buf) then
    return
  end
  local lines = api.nvim_buf_get_lines(buf, 0, -1, false)
  local from, to
  for i, line in ipairs(lines) do
    if not from and line == '### Reasoning' then
      from = i
    elseif from and line == '### Answer' then
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

--- What every call to the host carries: where history and the log live, their
--- options, and the presets with the one in use.
function M.host_payload()
  return {
    data_dir = vim.fn.stdpath('data'),
    history = M.config.history,
    presets = M.config.presets,
    preset = M.current_preset() or vim.NIL,
    models = require('kznllm.models').overrides(), -- picked with :KznPreset!
    log_dir = vim.fn.stdpath('log'),
    log_level = (M.config.log or {}).level or 'info',
  }
end

function M.start(spec)
  local buf = spec.buf or api.nvim_get_current_buf()
  local cursor = api.nvim_win_get_cursor(0)
  local range = spec.range or M.after_cursor(buf)
  if spec.replace and not spec.debug and not vim.bo[buf].modifiable then
    vim.notify('kznllm: the buffer is not modifiable', vim.log.levels.ERROR)
    return
  end
  job.clear_marks(buf)
  local selection = spec.replace and region_text(buf, range, spec.block) or ''
  local before, after = context(buf, range)
  local preset = M.current_preset()
  local target, target_range = buf, range
  if spec.debug then
    -- the request, then the answer, go to a scratch buffer; the source is untouched
    target, target_range = debug_buffer(), { 0, 0, 0, 0 }
  end
  local j = job.new(target, target_range, {
    replace = spec.replace and not spec.debug,
    block = not spec.debug and spec.block or nil,
    label = 'kznllm' .. (preset and (' ' .. preset) or ''),
    on_done = spec.debug and function()
      fold_reasoning(target)
    end or nil,
  })
  local ok, err = pcall(
    host.notify,
    'fill',
    vim.tbl_extend('error', M.host_payload(), {
      id = j.id,
      bufnr = target,
      debug = spec.debug or false,
      mode = spec.replace and 'replace' or 'yap',
      linewise = (spec.linewise and not spec.debug) or false,
      query = spec.query,
      selection = selection,
      filetype = vim.bo[buf].filetype,
      path = api.nvim_buf_get_name(buf),
      before = before,
      after = after,
      cursor = cursor,
      cwd = vim.fn.getcwd(),
      config_dir = vim.fn.stdpath('config'),
      retries = M.config.retries,
      max_response_bytes = M.config.max_response_bytes,
      timeouts = M.config.timeouts,
      followup = spec.followup,
      rerun = spec.rerun,
    })
  )
  if not ok then
    job.finish(j.id, 'error', tostring(err))
  end
  return j.id
end

--- The end of `buf`, where a follow-up's answer goes.
local function buffer_end(buf)
  local last = api.nvim_buf_line_count(buf) - 1
  local len = line_len(buf, last)
  return { last, len, last, len }
end

local function streaming_in(buf)
  for _, j in pairs(job.jobs) do
    if j.buf == buf and not j.done then
      return true
    end
  end
  return false
end

--- A follow-up in a conversation buffer (debug view, history entry, re-run): the
--- earlier turns are sent as messages, the answer goes below.
local function follow_up(buf, opts)
  if streaming_in(buf) then
    return vim.notify('kznllm: an answer is still streaming here (<Esc> cancels it)')
  end
  local entry = vim.b[buf].kznllm_entry
  if not entry then
    return vim.notify(
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

--- Re-run history entry `id` with the current preset, into a scratch buffer.
function M.rerun(id)
  local buf = sidebar.scratch(('kznllm://rerun/%d-%d'):format(id, vim.uv.hrtime() % 1e6))
  return M.start({ buf = buf, query = '', rerun = id, range = { 0, 0, 0, 0 } })
end

--- What the mapping and :KznFill do: capture the selection now, ask the query, start.
function M.prompt_fill(opts)
  local buf = api.nvim_get_current_buf()
  local spec = { buf = buf, query = opts.query, debug = opts.debug }
  local mode = opts.mode
  local visual = mode == 'v' or mode == 'V' or mode == '\22' or opts.line1 or opts.marks
  if vim.b[buf].kznllm_conversation and not visual and not opts.debug then
    return follow_up(buf, opts)
  end
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
  elseif opts.marks then
    -- :'<,'>KznFill right after a visual selection: use its exact extent
    local vmode = vim.fn.visualmode()
    spec.replace = true
    spec.linewise = vmode == 'V'
    spec.range, spec.block = M.region(buf, vmode, vim.fn.getpos("'<"), vim.fn.getpos("'>"))
  end
  if not spec.replace then
    spec.range = M.after_cursor(buf)
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
      M.start(spec)
    end
  end)
end

--- :[range]KznFill [query]
function M.command_fill(cmd, debug)
  local opts = { query = cmd.args, debug = debug }
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
    return vim.notify(('kznllm: unknown :KznHistory argument %q'):format(arg), vim.log.levels.ERROR)
  end
  local h = M.config.history
  if h == false or (type(h) == 'table' and h.enabled == false) then
    return vim.notify(
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
  return host.request(
    'presets',
    { presets = M.config.presets, current = M.current_preset() or vim.NIL }
  )
end

--- `pick_model` (`:KznPreset!`): then pick the preset's model from its server's list
--- (without `id`: the model of the preset in use).
function M.select_preset(id, pick_model)
  local ok, list = pcall(M.presets)
  if not ok then
    vim.notify('kznllm: ' .. tostring(list), vim.log.levels.ERROR)
    return
  end
  local function choose(p)
    M.state.preset = p.id
    save_preset(p.id)
    sidebar.changed() -- its context shows the preset
    vim.notify(('kznllm: preset %s (%s)'):format(p.id, p.description or ''), vim.log.levels.INFO)
    if pick_model then
      require('kznllm.models').pick(p)
    end
  end
  if pick_model and (not id or id == '') then
    id = list.current
  end
  if id and id ~= '' then
    for _, p in ipairs(list.presets) do
      if p.id == id then
        return choose(p)
      end
    end
    vim.notify(('kznllm: unknown preset %q'):format(id), vim.log.levels.ERROR)
    return
  end
  vim.ui.select(list.presets, {
    prompt = 'kznllm preset',
    format_item = function(p)
      return (p.id == list.current and '● ' or '  ') .. p.id .. ' — ' .. (p.description or '')
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
