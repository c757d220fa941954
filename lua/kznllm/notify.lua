-- Every message of the plugin goes through here. With Neovim's own vim.notify, a message
-- takes one line of the screen and of :messages (no "Press ENTER"): a longer one is cut
-- to fit and ends with "… :KznLog"; :KznLog shows the last messages whole (the host's
-- log, stdpath('log')/kznllm.log, has them too). A vim.notify of a UI plugin
-- (nvim-notify, noice) gets the whole text. setup({ notify = 'all' | 'errors' | false }):
-- 'errors' drops the routine (info) ones, false also the warnings; errors always show.
local M = {}

local api = vim.api
local levels = vim.log.levels
local config = require('kznllm.config')

local function builtin()
  local info = debug.getinfo(vim.notify, 'S')
  return info ~= nil and info.source:find('vim/_editor.lua', 1, true) ~= nil
end

local MORE = '… :KznLog' -- where the rest of a cut message is

--- `text` cut to `width` display cells, ending with `more` when cut.
local function fit(text, width, more)
  more = more or '…'
  if vim.fn.strdisplaywidth(text) <= width then
    return text
  end
  local room = width - vim.fn.strdisplaywidth(more)
  local chars = vim.fn.strcharlen(text)
  while chars > 0 and vim.fn.strdisplaywidth(vim.fn.strcharpart(text, 0, chars)) > room do
    chars = chars - 1
  end
  return vim.fn.strcharpart(text, 0, chars) .. more
end

-- the last messages, whole, for :KznLog: { time, level, text }, oldest first
M.LOG_SIZE = 200
M.log = {}

local function remember(msg, level)
  table.insert(M.log, { os.time(), level, msg })
  if #M.log > M.LOG_SIZE then
    table.remove(M.log, 1)
  end
end

local NAMES = { [levels.ERROR] = 'error', [levels.WARN] = 'warn', [levels.INFO] = 'info' }

--- The log's lines: a message per entry, its later lines indented under it.
function M.log_lines()
  local out = {}
  for _, e in ipairs(M.log) do
    local head = ('%s %-5s '):format(os.date('%H:%M:%S', e[1]), NAMES[e[2]] or 'info')
    for i, line in ipairs(vim.split(e[3], '\n', { plain = true })) do
      table.insert(out, (i == 1 and head or (' '):rep(#head)) .. line)
    end
  end
  return out
end

--- :KznLog: the last messages in full, in a scratch window below (q closes it).
function M.show_log()
  local name = 'kznllm://log'
  local buf = vim.fn.bufnr(name)
  if buf == -1 then
    buf = api.nvim_create_buf(false, true)
    api.nvim_buf_set_name(buf, name)
    vim.bo[buf].bufhidden = 'wipe'
    vim.keymap.set('n', 'q', '<Cmd>close<CR>', { buffer = buf, nowait = true })
  end
  vim.bo[buf].modifiable = true
  local lines = M.log_lines()
  api.nvim_buf_set_lines(buf, 0, -1, false, #lines > 0 and lines or { '(no messages yet)' })
  vim.bo[buf].modifiable = false
  local win = vim.fn.bufwinid(buf)
  if win == -1 then
    local rows = 0 -- as wrapped on the screen
    for _, line in ipairs(lines) do
      rows = rows + math.max(1, math.ceil(vim.fn.strdisplaywidth(line) / vim.o.columns))
    end
    vim.cmd('botright ' .. math.min(15, math.max(3, rows)) .. 'split')
    api.nvim_win_set_buf(0, buf)
    vim.wo.wrap = true
    vim.wo.linebreak = true
    win = api.nvim_get_current_win()
  end
  api.nvim_set_current_win(win)
  api.nvim_win_set_cursor(win, { api.nvim_buf_line_count(buf), 0 })
end

-- a refusal holds the echo area this long: a routine line arriving right after (an
-- answer elsewhere ending: "done in 3.2s") goes to :KznLog only, not over it
M.HOLD_MS = 4000
local held_until = 0
local warned_until = 0 -- a warning holds the echo area against routine lines only

local function held()
  return vim.uv.now() < held_until
end

---@param msg string
---@param level integer|nil vim.log.levels (default INFO)
function M.notify(msg, level)
  level = level or levels.INFO
  remember(msg, level)
  local mode = config.options.notify
  if level < levels.ERROR and (mode == false or (mode == 'errors' and level < levels.WARN)) then
    return
  end
  if level < levels.WARN and held() then
    return -- a refusal is on the screen; :KznLog has this one
  end
  if level >= levels.WARN then
    -- a warning is not covered by the routine line that comes right after it (its
    -- answer's "done in"): that one goes to :KznLog (what the user asks for still shows)
    vim.uv.update_time()
    warned_until = vim.uv.now() + M.HOLD_MS
  end
  if not builtin() then
    return vim.notify(msg, level, { title = 'kznllm' })
  end
  local hl = level >= levels.ERROR and 'ErrorMsg' or level >= levels.WARN and 'WarningMsg' or nil
  local line = msg:match('^[^\n]*')
  local width = math.max(20, (vim.v.echospace or 80) - 1)
  if line ~= msg then
    line = line .. ' ' .. MORE -- more lines: :KznLog has them
    if vim.fn.strdisplaywidth(line) <= width then
      return api.nvim_echo({ { line, hl } }, true, {})
    end
  end
  -- one line on the screen and in :messages; :KznLog has the whole text
  api.nvim_echo({ { fit(line, width, MORE), hl } }, true, {})
end

--- A refusal: said at once, and not covered by a routine line for M.HOLD_MS.
function M.refuse(msg, level)
  vim.uv.update_time()
  held_until = vim.uv.now() + M.HOLD_MS
  M.notify(msg, level or levels.ERROR)
end

--- `notify` once the screen is redrawn: after a pick in vim.ui.select (an inputlist)
--- the screen is scrolled up, and a message then would ask for ENTER.
function M.after_pick(msg, level)
  vim.schedule(function()
    vim.cmd('redraw')
    M.notify(msg, level)
  end)
end

local FRAMES = { '⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏' }

--- The spinner's frame at `tick` (ticks a tenth of a second apart; any whole number):
--- the progress, the sidebar's live rows and the statusline turn the same one.
function M.spinner(tick)
  return FRAMES[math.floor(tick) % #FRAMES + 1]
end

--- A routine line (a fill's timings): one line in the echo area and :messages, only
--- with notify = 'all'.
function M.routine(msg)
  remember(msg, levels.INFO)
  if config.options.notify == 'all' and not held() and vim.uv.now() >= warned_until then
    local width = math.max(20, (vim.v.echospace or 80) - 1)
    api.nvim_echo({ { fit(msg, width) } }, true, {})
  end
end

return M
