-- Every message of the plugin goes through here. With Neovim's own vim.notify, a message
-- takes one line of the screen and of :messages (no "Press ENTER"): a longer one is cut
-- to fit; the host's log (stdpath('log')/kznllm.log) has the whole text. A vim.notify of
-- a UI plugin (nvim-notify, noice) gets the whole text. setup({ notify = 'all' |
-- 'errors' | false }): 'errors' drops the routine (info) ones, false also the warnings;
-- errors always show.
local M = {}

local api = vim.api
local levels = vim.log.levels
local config = require('kznllm.config')

local function builtin()
  local info = debug.getinfo(vim.notify, 'S')
  return info ~= nil and info.source:find('vim/_editor.lua', 1, true) ~= nil
end

--- `text` cut to `width` display cells, with an ellipsis when cut.
local function fit(text, width)
  if vim.fn.strdisplaywidth(text) <= width then
    return text
  end
  local chars = vim.fn.strcharlen(text)
  while chars > 0 and vim.fn.strdisplaywidth(vim.fn.strcharpart(text, 0, chars)) > width - 1 do
    chars = chars - 1
  end
  return vim.fn.strcharpart(text, 0, chars) .. '…'
end

---@param msg string
---@param level integer|nil vim.log.levels (default INFO)
function M.notify(msg, level)
  level = level or levels.INFO
  local mode = config.options.notify
  if level < levels.ERROR and (mode == false or (mode == 'errors' and level < levels.WARN)) then
    return
  end
  if not builtin() then
    return vim.notify(msg, level, { title = 'kznllm' })
  end
  local hl = level >= levels.ERROR and 'ErrorMsg' or level >= levels.WARN and 'WarningMsg' or nil
  local line = msg:match('^[^\n]*')
  local width = math.max(20, (vim.v.echospace or 80) - 1)
  if line ~= msg then
    line = line .. ' …'
  end
  -- one line on the screen and in :messages; the host's log has the whole text
  api.nvim_echo({ { fit(line, width), hl } }, true, {})
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
  if config.options.notify == 'all' then
    local width = math.max(20, (vim.v.echospace or 80) - 1)
    api.nvim_echo({ { fit(msg, width) } }, true, {})
  end
end

return M
