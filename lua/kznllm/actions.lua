-- What the commands and keys do: capture what the editor knows (capture.lua), ask the
-- query, start the job, follow up, send or re-run in a conversation buffer; the sidebar
-- toggle and the statusline string. Loaded on first use (init.lua holds setup()); the
-- Python host owns presets, prompts, HTTP, streaming and the messages that end a job.
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
local capture = lazy('kznllm.capture')
local presets = lazy('kznllm.presets')
local apply = lazy('kznllm.apply')

--- Start a generation. spec = { query, replace = bool, range = {..}, block = {..}, buf }
--- The debug view's scratch buffer, in a split on the right.
local function debug_buffer()
  local name = ('kznllm://debug/%d'):format(vim.uv.hrtime() % 1e9)
  local buf = sidebar.scratch(name, 'botright vsplit')
  vim.b[buf].kznllm_debug = true -- its request can be edited and sent (:KznSend)
  return buf
end

--- Fold the debug view's reasoning once the answer is in (`fold`: its first and last
--- line, from the host): `za` opens it.
local function fold_reasoning(buf, fold)
  if type(fold) ~= 'table' or not fold[2] or not api.nvim_buf_is_valid(buf) then
    return
  end
  local last = api.nvim_buf_line_count(buf)
  local from, to = math.min(fold[1], last), math.min(math.max(fold[1], fold[2]), last)
  for _, win in ipairs(vim.fn.win_findbuf(buf)) do
    api.nvim_win_call(win, function()
      vim.wo.foldmethod = 'manual'
      vim.wo.foldenable = true
      pcall(vim.cmd, ('%d,%dfold'):format(from, to))
    end)
  end
end

--- Why `buf` cannot take an answer, or nil.
local function unwritable(buf)
  return require('kznllm.refusal').unwritable(buf)
end

local function refuse(region, msg, level)
  job.release(region)
  require('kznllm.notify').refuse('kznllm: ' .. msg, level)
end

local BUSY = 'another answer is streaming there (<Esc> cancels it); nothing was sent'

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
  if spec.gather and not spec.context then
    -- the context gathered since the keypress: what answered by its deadline
    return require('kznllm.context').finish(spec.gather, function(facts)
      spec.context = facts
      if api.nvim_buf_is_valid(buf) then
        return M.start(spec)
      end
      job.release(spec.region)
    end)
  end
  local cursor = spec.cursor or api.nvim_win_get_cursor(0)
  if not spec.replace and not spec.placement then
    spec.placement = spec.range and 'cursor' or presets.placement()
  end
  local to_scratch = spec.debug or scratch_placement(spec)
  local region = spec.region or capture.capture(buf, spec)
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
  local before, after = capture.context(buf, job.text_bounds(region))
  local preset = spec.preset or presets.current_preset()
  local target, placement = buf, spec.placement
  local source = region
  if to_scratch then
    -- the answer goes to a scratch buffer (with the request first, in the debug view);
    -- the source is untouched
    target = spec.debug and debug_buffer() or answer_buffer(buf, spec.placement)
    if spec.replace then
      apply.remember_source(target, buf, source) -- :KznApply there puts the answer in its place
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
    placement = placement,
    preset = preset, -- a dot-repeat's, or the current one (nil: the host's default)
    label = 'kznllm' .. (preset and (' ' .. preset) or ''),
    on_done = spec.debug and function(_, info)
      fold_reasoning(target, info and info.fold)
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
    spot = (not spec.replace and not to_scratch) and job.spot(region, capture.CONTEXT_BYTES) or nil,
    query = spec.query,
    selection = selection,
    span = spec.replace and apply.span(source) or nil, -- where it stood, for :KznApply
    filetype = vim.bo[buf].filetype,
    fileformat = vim.bo[target].fileformat,
    -- how the answer is shaped for the buffer it lands in (kznllm_py/fill/shape.py)
    commentstring = vim.bo[target].commentstring,
    buftype = vim.bo[target].buftype,
    expandtab = vim.bo[target].expandtab,
    shiftwidth = vim.fn.shiftwidth(),
    path = api.nvim_buf_get_name(buf),
    before = before,
    after = after,
    cursor = cursor,
    cwd = vim.fn.getcwd(),
    followup = spec.followup,
    rerun = spec.rerun,
    send = spec.send,
    review = j.review or false,
    context = spec.context, -- gathered at the keypress (kznllm.context)
  })
  job.started(j) -- the request is on its way: the progress, <Esc>, KznllmStart
  if not ok then
    job.finish(j.id, 'error', tostring(err))
  else
    j.chan = host.chan
    host.watch()
  end
  return j.id
end

local NO_ENTRY = 'kznllm: nothing to follow up here: the history has no entry for this buffer'
  .. ' (follow-ups need setup({ history = true }))'

--- `fn()` now, or once the answer streaming in `buf` has ended (a follow-up asked
--- while it streams: its query is typed into the prompt, never run as commands).
local function when_idle(buf, fn)
  if not job.streaming_in(buf) then
    return fn()
  end
  notify('kznllm: the follow-up goes out when the answer streaming here ends')
  api.nvim_create_autocmd('User', {
    pattern = 'KznllmDone',
    callback = function(ev)
      if not api.nvim_buf_is_valid(buf) then
        return true
      end
      if ev.data and ev.data.bufnr == buf and not job.streaming_in(buf) then
        vim.schedule(fn)
        return true -- once
      end
    end,
  })
end

--- A follow-up in a conversation buffer (debug view, history entry, re-run): the
--- earlier turns are sent as messages, the answer goes below. Asked while an answer
--- still streams there, it goes out once that one ends.
local function follow_up(buf, opts)
  local streaming = job.streaming_in(buf)
  if not streaming and not vim.b[buf].kznllm_entry then
    return notify(NO_ENTRY, vim.log.levels.ERROR)
  end
  local why = require('kznllm.refusal').missing_key(presets.current_preset())
  if why then
    return require('kznllm.notify').refuse('kznllm: ' .. why, vim.log.levels.ERROR)
  end
  local function go(q)
    if q and q ~= '' then
      when_idle(buf, function()
        local entry = vim.b[buf].kznllm_entry -- the entry of the answer that just ended
        if not entry then
          return notify(NO_ENTRY, vim.log.levels.ERROR)
        end
        M.start({ buf = buf, query = q, followup = entry, range = capture.buffer_end(buf) })
      end)
    end
  end
  pcall(host.ensure)
  if opts.query and opts.query ~= '' then
    return go(opts.query)
  end
  local prompt = streaming and 'kznllm follow-up (sent when this answer ends): '
    or 'kznllm follow-up: '
  vim.ui.input({ prompt = prompt }, go)
end

--- :KznSend in a debug view: send the request as the view shows it now (the user may
--- have edited its model, parameters, system and messages); the answer streams below.
function M.send()
  local buf = api.nvim_get_current_buf()
  if not vim.b[buf].kznllm_debug then
    return notify('kznllm: :KznSend works in a debug view (:KznDebug)', vim.log.levels.ERROR)
  end
  if job.streaming_in(buf) then
    return notify('kznllm: an answer is still streaming here (<Esc> cancels it)')
  end
  local text = table.concat(api.nvim_buf_get_lines(buf, 0, -1, true), '\n')
  pcall(host.ensure)
  M.start({ buf = buf, query = '', send = text, range = capture.buffer_end(buf) })
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
    spec.range, spec.block = capture.region(buf, mode, a, b)
  elseif opts.line1 then
    spec.replace = true
    spec.linewise = true
    spec.range = { opts.line1 - 1, 0, opts.line2 - 1, capture.line_len(buf, opts.line2 - 1) }
  elseif opts.span then
    -- an operator's motion: { visual mode, start, end } as getpos() gives them
    spec.replace = true
    spec.linewise = opts.span[1] == 'V'
    spec.range, spec.block = capture.region(buf, opts.span[1], opts.span[2], opts.span[3])
  elseif opts.marks then
    -- :'<,'>KznFill right after a visual selection: use its exact extent
    local vmode = vim.fn.visualmode()
    spec.replace = true
    spec.linewise = vmode == 'V'
    spec.range, spec.block = capture.region(buf, vmode, vim.fn.getpos("'<"), vim.fn.getpos("'>"))
  else
    spec.placement = presets.placement()
    if not presets.PLACEMENTS[spec.placement] then
      return notify(
        ('kznllm: unknown placement %q (auto, cursor, below, above, split or tab)'):format(
          spec.placement
        ),
        vim.log.levels.ERROR
      )
    end
  end
  local to_scratch = spec.debug or scratch_placement(spec)
  -- every refusal before the prompt opens: nothing typed after it is lost
  local why = require('kznllm.refusal').before_prompt(buf, spec, to_scratch)
  if why then
    return require('kznllm.notify').refuse('kznllm: ' .. why, vim.log.levels.ERROR)
  end
  spec.region = capture.capture(buf, spec)
  if not to_scratch and job.overlapping(buf, job.bounds(spec.region)) then
    return refuse(spec.region, BUSY)
  end
  if not vim.b[buf].kznllm_conversation then
    -- what the model is shown beside the selection, gathered while the query is typed
    spec.gather = require('kznllm.context').start(buf, job.text_bounds(spec.region))
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
      require('kznllm.context').drop(spec.gather) -- its language server requests too
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

local last_spent = nil

--- From the host, at the end of a fill that reported its tokens: "1200→340 $0.0042"
--- (the words are the host's: pricing.figures), shown by M.status() until the next.
function M.spent(text)
  last_spent = text
end

--- A short string for statuslines: the preset (and the last fill's tokens and cost),
--- and while requests run a spinner with the elapsed seconds of the oldest one (and
--- how many run, if more than one).
function M.status()
  local p = presets.current_preset() or 'default'
  local n, oldest = job.running()
  if n == 0 then
    return 'kznllm ' .. p .. (last_spent and (' ' .. last_spent) or '')
  end
  local secs = (vim.uv.hrtime() - oldest) / 1e9
  local frame = require('kznllm.notify').spinner(secs * 10)
  return ('kznllm %s %s %.1fs%s'):format(p, frame, secs, n > 1 and (' ×' .. n) or '')
end

return M
