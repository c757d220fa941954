-- The history sidebar: a nofile buffer in a vertical split. The host lays out every
-- line (context, entries, help) and reads the store; this side puts the lines in the
-- buffer, maps the keys, pages in more entries as the cursor nears the end, and draws
-- the live status (spinner, seconds, tokens) of the requests that stream now.
local M = {}

local api = vim.api
local ns = api.nvim_create_namespace('kznllm_history')
local live_ns = api.nvim_create_namespace('kznllm_history_live')

local config = require('kznllm.config')

local function opts()
  return config.options.sidebar
end

--- The sidebar's width in columns for a screen `columns` wide.
function M.width(columns)
  local c = opts()
  local w = c.width or 0.4
  if w < 1 then
    w = math.floor(columns * w + 0.5)
  end
  w = math.max(c.min_width or 1, math.min(c.max_width or w, w))
  return math.max(1, math.min(w, columns - 20)) -- leave the code some room
end

local state = {
  buf = nil,
  seq = 0, -- the latest view asked for: older answers are dropped
  rows = {}, -- entry id per line (1-based), 0 for other lines
  live = {},
  live_width = 26,
  more = false,
  next_offset = 0,
  loading = false,
  filter = '',
  help = false,
  prev_win = nil, -- the window the user works in (put goes there)
  view_win = nil, -- the window entries and re-runs open in (reused)
  timer = nil,
  pending_refresh = false,
}
M.state = state

local function hl_defaults()
  local links = {
    KznllmHistoryTitle = 'Title',
    KznllmHistoryLabel = 'Identifier',
    KznllmHistoryDim = 'Comment',
    KznllmHistoryOk = 'DiagnosticOk',
    KznllmHistoryError = 'DiagnosticError',
    KznllmHistoryCancelled = 'DiagnosticWarn',
    KznllmHistoryRejected = 'DiagnosticWarn',
    KznllmHistoryUnfinished = 'DiagnosticWarn',
    KznllmHistoryRunning = 'DiagnosticInfo',
  }
  for group, link in pairs(links) do
    api.nvim_set_hl(0, group, { default = true, link = link })
  end
end
hl_defaults()

local notify = require('kznllm.notify').notify

local function host()
  return require('kznllm.host')
end

--- The window showing the sidebar in this tab, if any.
function M.win()
  if not (state.buf and api.nvim_buf_is_valid(state.buf)) then
    return nil
  end
  for _, w in ipairs(api.nvim_tabpage_list_wins(0)) do
    if api.nvim_win_get_buf(w) == state.buf then
      return w
    end
  end
  return nil
end

local function work_win()
  local w = state.prev_win
  if w and api.nvim_win_is_valid(w) and w ~= M.win() then
    return w
  end
  for _, win in ipairs(api.nvim_tabpage_list_wins(0)) do
    if win ~= M.win() and api.nvim_win_get_config(win).relative == '' then
      return win
    end
  end
  return nil
end

--- Ask the host for the view from `offset` (0: the whole sidebar, else one more page).
function M.request(offset)
  state.seq = state.seq + 1
  state.loading = true
  -- the preset the next request would use; the host has the rest (host.configure)
  local p = { preset = require('kznllm.presets').current_preset() or vim.NIL }
  local w = work_win()
  local buf = w and api.nvim_win_get_buf(w) or api.nvim_get_current_buf()
  p.seq = state.seq
  p.offset = offset or 0
  p.filter = state.filter
  p.help = state.help
  p.keys = opts().keys
  local sw = M.win()
  p.width = sw and api.nvim_win_get_width(sw) or M.width(vim.o.columns)
  p.path = api.nvim_buf_get_name(buf)
  p.filetype = vim.bo[buf].filetype
  p.cwd = vim.fn.getcwd(w or 0)
  local ok, err = pcall(host().notify, 'history_view', p)
  if not ok then
    state.loading = false
    notify(tostring(err), vim.log.levels.ERROR)
  end
end

local function entry_at_cursor()
  local w = M.win()
  if not w then
    return nil
  end
  local id = state.rows[api.nvim_win_get_cursor(w)[1]]
  if not id or id == 0 then
    return nil
  end
  return id
end

local function draw_live()
  if not (state.buf and api.nvim_buf_is_valid(state.buf)) then
    return 0
  end
  api.nvim_buf_clear_namespace(state.buf, live_ns, 0, -1)
  local jobs = require('kznllm.job').jobs
  local n = 0
  for _, l in ipairs(state.live) do
    local job = jobs[l.job]
    if job and not job.done then
      n = n + 1
      local secs = (vim.uv.hrtime() - job.started) / 1e9
      local text = ('%s %.1fs ~%d tok'):format(
        require('kznllm.notify').spinner(secs * 10),
        secs,
        job.tokens or 0 -- the host's estimate (context.estimate_tokens)
      )
      if vim.fn.strdisplaywidth(text) > state.live_width then -- narrow: the query stays
        text = ('%s %.1fs'):format(require('kznllm.notify').spinner(secs * 10), secs)
      end
      text = text .. string.rep(' ', math.max(0, state.live_width - vim.fn.strdisplaywidth(text)))
      pcall(api.nvim_buf_set_extmark, state.buf, live_ns, l.line, l.col, {
        virt_text = { { text, 'KznllmHistoryRunning' } },
        virt_text_pos = 'overlay',
      })
    end
  end
  return n
end

local function stop_timer()
  if state.timer then
    state.timer:stop()
    state.timer:close()
    state.timer = nil
  end
end

local function start_timer()
  if state.timer or #state.live == 0 then
    return
  end
  state.timer = vim.uv.new_timer()
  state.timer:start(
    100,
    100,
    vim.schedule_wrap(function()
      if not M.win() or draw_live() == 0 then
        stop_timer()
      end
    end)
  )
end

local function set_lines(from, to, lines)
  vim.bo[state.buf].modifiable = true
  api.nvim_buf_set_lines(state.buf, from, to, false, lines)
  vim.bo[state.buf].modifiable = false
end

local map_keys -- below, with the actions the keys run

--- From the host: a view (kznllm_py/history/view.py render(), with its keys).
function M.render(view)
  if view.seq ~= state.seq or not (state.buf and api.nvim_buf_is_valid(state.buf)) then
    return
  end
  state.loading = false
  local base = 0
  local w = M.win()
  local keep = w and entry_at_cursor()
  local cursor = w and api.nvim_win_get_cursor(w)
  if view.first_page then
    set_lines(0, -1, view.lines)
    api.nvim_buf_clear_namespace(state.buf, ns, 0, -1)
    state.rows, state.live = {}, {}
  else
    base = #state.rows - (state.more and 1 or 0) -- the "… more" line goes
    set_lines(base, -1, view.lines)
    for i = #state.rows, base + 1, -1 do
      state.rows[i] = nil
    end
  end
  for i, id in ipairs(view.rows) do
    state.rows[base + i] = id
  end
  if view.keys then
    map_keys(state.buf, view.keys)
  end
  for _, h in ipairs(view.hl) do
    pcall(api.nvim_buf_set_extmark, state.buf, ns, base + h[1], h[2], {
      end_row = base + h[1],
      end_col = h[3],
      hl_group = h[4],
    })
  end
  for _, l in ipairs(view.live) do
    table.insert(state.live, { line = base + l.line, col = l.col, job = l.job })
  end
  state.live_width = view.live_width or state.live_width
  state.more = view.more
  state.next_offset = view.next_offset
  draw_live()
  start_timer()
  if view.first_page and w then
    -- stay on the entry the cursor was on, else on the same line
    local row = cursor and math.min(cursor[1], api.nvim_buf_line_count(state.buf)) or 1
    if keep then
      for i, id in ipairs(state.rows) do
        if id == keep then
          row = i
          break
        end
      end
    end
    pcall(api.nvim_win_set_cursor, w, { row, 0 })
  end
  vim.b[state.buf].kznllm_rendered = (vim.b[state.buf].kznllm_rendered or 0) + 1
  pcall(api.nvim_exec_autocmds, 'User', { pattern = 'KznllmHistoryRendered' })
end

--- From the host: something was recorded or removed. Refresh if the sidebar shows.
function M.changed()
  if not M.win() or state.pending_refresh then
    return
  end
  state.pending_refresh = true
  vim.defer_fn(function()
    state.pending_refresh = false
    if M.win() then
      M.request(0)
    end
  end, 20)
end

--- From the host: the entry deleted last is back (`id`), or there was none (0).
function M.undeleted(id)
  if id and id > 0 then
    notify(('kznllm: entry #%d is back'):format(id))
    M.changed()
  else
    notify('kznllm: no deleted entry to bring back', vim.log.levels.WARN)
  end
end

function M.cleared(n)
  notify(('kznllm: history cleared (%d entr%s)'):format(n, n == 1 and 'y' or 'ies'))
  M.changed()
end

--- A markdown scratch buffer for a conversation (the debug view, an opened entry, a
--- re-run): :KznFill there follows up (see job.entry). `split` opens it from the
--- current window (default 'belowright split'; '' for the current window itself);
--- with no room (E36), in that window.
--- `q` in a scratch view whose answer still streams: its window goes (its tab, when it
--- is the tab's only one), the buffer stays loaded so the answer keeps landing in it.
local function hide_streaming(buf)
  if #api.nvim_tabpage_list_wins(0) > 1 then
    api.nvim_win_hide(0)
  elseif #api.nvim_list_tabpages() > 1 then
    vim.cmd('tabclose')
  else
    -- the only window: show another buffer in it (the alternate one, else an empty one)
    if not pcall(vim.cmd, 'buffer #') or api.nvim_get_current_buf() == buf then
      vim.cmd('enew')
    end
  end
  require('kznllm.notify').notify(
    ('kznllm: :sb %d shows the hidden answer; :KznCancel there stops it'):format(buf)
  )
end

function M.scratch(name, split)
  local buf = api.nvim_create_buf(false, true)
  vim.bo[buf].bufhidden = 'hide'
  vim.bo[buf].filetype = 'markdown'
  pcall(api.nvim_buf_set_name, buf, name)
  vim.b[buf].kznllm_conversation = true
  -- q closes it (not a macro), as in :help or the quickfix list; an answer still
  -- streaming into it goes on, hidden, and one line says how to get it back
  vim.keymap.set('n', 'q', function()
    if require('kznllm.job').streaming_in(buf) then
      return hide_streaming(buf)
    end
    if #api.nvim_tabpage_list_wins(0) > 1 then
      api.nvim_win_close(0, false)
    else
      pcall(vim.cmd, 'bdelete')
    end
  end, { buffer = buf, nowait = true, desc = 'kznllm: close' })
  if split ~= '' then
    pcall(vim.cmd, split or 'belowright split')
  end
  api.nvim_win_set_buf(0, buf)
  vim.wo.wrap = true
  vim.wo.linebreak = true
  return buf
end

local function to_work_win()
  local w = work_win()
  if w then
    api.nvim_set_current_win(w)
  end
end

--- A scratch buffer for an entry or a re-run opened from the sidebar: in the window
--- the last one opened in, while it shows one, else in a new split by the code.
function M.view_scratch(name)
  local w = state.view_win
  if w and api.nvim_win_is_valid(w) and vim.b[api.nvim_win_get_buf(w)].kznllm_conversation then
    api.nvim_set_current_win(w)
    local buf = M.scratch(name, '')
    return buf
  end
  to_work_win()
  local buf = M.scratch(name)
  state.view_win = api.nvim_get_current_win()
  return buf
end

function M.entry(data)
  if data.action == 'open' then
    local buf = M.view_scratch(('kznllm://history/%d-%d'):format(data.entry, vim.uv.hrtime() % 1e6))
    api.nvim_buf_set_lines(buf, 0, -1, false, data.lines)
    vim.b[buf].kznllm_entry = data.entry
    vim.wo.foldmethod = 'manual'
    vim.wo.foldenable = true
    for _, f in ipairs(data.folds) do
      pcall(vim.cmd, ('%d,%dfold'):format(f[1], f[2]))
    end
    api.nvim_win_set_cursor(0, { 1, 0 })
    return
  end
  local lines = vim.split(data.text or '', '\n', { plain = true })
  if data.action == 'yank' then
    local reg = (data.register and data.register ~= vim.NIL and data.register ~= '')
        and data.register
      or '"'
    vim.fn.setreg(reg, data.text or '', #lines > 1 and 'l' or 'c')
    notify(
      ('kznllm: yanked the response of #%d (%d line%s)'):format(
        data.id,
        #lines,
        #lines == 1 and '' or 's'
      )
    )
  elseif data.action == 'put' then
    local w = work_win()
    if not w then
      return notify('kznllm: no window to put the response in', vim.log.levels.ERROR)
    end
    local buf = api.nvim_win_get_buf(w)
    if not vim.bo[buf].modifiable then
      return notify('kznllm: the buffer is not modifiable', vim.log.levels.ERROR)
    end
    -- a multi-line answer goes in as whole lines below the cursor's, as `p` of a
    -- linewise register does; one line goes in after the cursor
    local linewise = #lines > 1
    if linewise and lines[#lines] == '' then
      table.remove(lines)
    end
    api.nvim_win_call(w, function()
      api.nvim_put(lines, linewise and 'l' or 'c', true, true)
    end)
  end
end

-- keys ----------------------------------------------------------------------------------

local function need_entry()
  local id = entry_at_cursor()
  if not id then
    notify('kznllm: no history entry on this line', vim.log.levels.WARN)
  end
  return id
end

local function entry_call(action)
  local id = need_entry()
  if not id then
    return
  end
  host().notify('history_entry', { id = id, action = action, register = vim.v.register })
end

local actions = {
  open = function()
    entry_call('open')
  end,
  yank = function()
    entry_call('yank')
  end,
  put = function()
    entry_call('put')
  end,
  rerun = function()
    local id = need_entry()
    if id then
      require('kznllm.actions').rerun(id, M.view_scratch)
    end
  end,
  delete = function()
    local id = need_entry()
    if id then
      host().notify('history_delete', { id = id })
    end
  end,
  undo = function()
    host().notify('history_undelete', vim.empty_dict())
  end,
  filter = function()
    -- the current filter is in the prompt, not in the text typed: what is typed replaces
    -- it, empty shows all, <Esc> keeps it
    local now = state.filter ~= '' and (' [now: ' .. state.filter .. ']') or ''
    vim.ui.input({
      prompt = 'kznllm history filter (words, preset:ID, status:S)' .. now .. ': ',
    }, function(q)
      if q then
        state.filter = vim.trim(q)
        M.request(0)
      end
    end)
  end,
  close = function()
    M.close()
  end,
  help = function()
    state.help = not state.help
    M.request(0)
  end,
}

--- Map the keys the host's view names ({ action = lhs }: setup()'s over its defaults).
map_keys = function(buf, keys)
  local old = vim.b[buf].kznllm_keys or {}
  if vim.deep_equal(old, keys) then
    return
  end
  for _, lhs in pairs(old) do
    pcall(vim.keymap.del, 'n', lhs, { buffer = buf })
  end
  for name, lhs in pairs(keys) do
    if actions[name] then
      vim.keymap.set(
        'n',
        lhs,
        actions[name],
        { buffer = buf, nowait = true, desc = 'kznllm: ' .. name }
      )
    end
  end
  vim.b[buf].kznllm_keys = keys
end

local function setup_buffer(buf)
  vim.bo[buf].buftype = 'nofile'
  vim.bo[buf].bufhidden = 'hide'
  vim.bo[buf].swapfile = false
  vim.bo[buf].modifiable = false
  vim.bo[buf].filetype = 'kznllm-history'
  pcall(api.nvim_buf_set_name, buf, 'kznllm://history')
  local group = api.nvim_create_augroup('kznllm_history_buf', { clear = true })
  api.nvim_create_autocmd('CursorMoved', {
    group = group,
    buffer = buf,
    callback = function()
      local w = M.win()
      if w and state.more and not state.loading then
        local row = api.nvim_win_get_cursor(w)[1]
        if row >= api.nvim_buf_line_count(buf) - 3 then
          M.request(state.next_offset)
        end
      end
    end,
  })
  api.nvim_create_autocmd('VimResized', {
    group = group,
    callback = function()
      local w = M.win()
      if w then -- its share of the new screen ('winfixwidth' kept the old one)
        api.nvim_win_set_width(w, M.width(vim.o.columns))
        M.request(0) -- laid out again for its new width
      end
    end,
  })
  api.nvim_create_autocmd('BufEnter', {
    group = group,
    callback = function(ev)
      if ev.buf ~= buf and M.win() and api.nvim_win_get_config(0).relative == '' then
        state.prev_win = api.nvim_get_current_win()
        M.changed() -- the context shows the current buffer
      end
    end,
  })
end

function M.close()
  local w = M.win()
  if w then
    if #api.nvim_tabpage_list_wins(0) == 1 then
      vim.cmd('enew')
    else
      api.nvim_win_close(w, true)
    end
  end
  stop_timer()
end

function M.open()
  if M.win() then
    return
  end
  state.prev_win = api.nvim_get_current_win()
  if not (state.buf and api.nvim_buf_is_valid(state.buf)) then
    state.buf = api.nvim_create_buf(false, true)
    setup_buffer(state.buf)
    set_lines(0, -1, { 'kznllm history: loading…' })
  end
  vim.cmd((opts().side == 'left' and 'topleft' or 'botright') .. ' vertical split')
  local w = api.nvim_get_current_win()
  api.nvim_win_set_buf(w, state.buf)
  api.nvim_win_set_width(w, M.width(vim.o.columns))
  vim.wo[w].winfixwidth = true
  vim.wo[w].wrap = false
  vim.wo[w].number = false
  vim.wo[w].relativenumber = false
  vim.wo[w].signcolumn = 'no'
  vim.wo[w].cursorline = true
  vim.wo[w].foldcolumn = '0'
  M.request(0)
end

function M.toggle()
  if M.win() then
    M.close()
  else
    M.open()
  end
end

--- :KznHistory clear: asks first (vim.ui.select, so UI plugins restyle it).
function M.clear()
  vim.ui.select({ 'Yes, delete every entry', 'No' }, {
    prompt = 'Clear the whole kznllm history?',
  }, function(choice, idx)
    if idx == 1 then
      host().notify('history_clear', vim.empty_dict())
    end
  end)
end

return M
