-- :KznContext: what a fill at the cursor (or on the range) would send now, section by
-- section, sent nowhere. The editor captures and gathers as a fill does (capture.lua,
-- context/); the host builds the same job and fits it (kznllm_py/fill/context_view.py)
-- and sends back the view's lines, shown here in a scratch buffer.
local M = {}

local api = vim.api

--- :[range]KznContext [query]
function M.show(cmd)
  local buf = api.nvim_get_current_buf()
  local capture = require('kznllm.capture')
  local range
  if cmd.range > 0 then
    local vmode = vim.fn.visualmode()
    local m1, m2 = api.nvim_buf_get_mark(0, '<'), api.nvim_buf_get_mark(0, '>')
    if m1[1] == cmd.line1 and m2[1] == cmd.line2 and vmode ~= '' and vmode ~= 'V' then
      range = capture.region(buf, vmode, vim.fn.getpos("'<"), vim.fn.getpos("'>"))
    else
      range = { cmd.line1 - 1, 0, cmd.line2 - 1, capture.line_len(buf, cmd.line2 - 1) }
    end
  else
    range = capture.after_cursor(buf)
  end
  local replace = cmd.range > 0
  local text = replace and api.nvim_buf_get_text(buf, range[1], range[2], range[3], range[4], {})
  local before, after = capture.context(buf, range)
  local host = require('kznllm.host')
  local data = {
    preset = require('kznllm.presets').current_preset() or vim.NIL,
    mode = replace and 'replace' or 'yap',
    query = cmd.args or '',
    selection = text and table.concat(text, '\n') or '',
    filetype = vim.bo[buf].filetype,
    path = api.nvim_buf_get_name(buf),
    before = before,
    after = after,
    cursor = api.nvim_win_get_cursor(0),
    cwd = vim.fn.getcwd(),
  }
  local context = require('kznllm.context')
  local gather = context.start(buf, range)
  pcall(host.ensure)
  local function send(facts)
    data.context = facts
    local ok, err = pcall(host.notify, 'context', data)
    if not ok then
      require('kznllm.notify').notify('kznllm: ' .. tostring(err), vim.log.levels.ERROR)
    end
  end
  if gather then
    context.finish(gather, send)
  else
    send(nil)
  end
end

--- From the host: the view's lines, in the one context view (made, or shown again).
function M.shown(lines)
  local buf = M.buf
  if not (buf and api.nvim_buf_is_valid(buf)) then
    buf = api.nvim_create_buf(false, true)
    vim.bo[buf].bufhidden = 'hide'
    vim.bo[buf].filetype = 'markdown'
    pcall(api.nvim_buf_set_name, buf, 'kznllm://context')
    vim.keymap.set('n', 'q', '<Cmd>close<CR>', { buffer = buf, desc = 'kznllm: close' })
    M.buf = buf
  end
  local win = vim.fn.bufwinid(buf)
  if win == -1 then
    vim.cmd('botright vsplit')
    api.nvim_win_set_buf(0, buf)
    vim.wo.wrap = true
    vim.wo.linebreak = true -- long titles wrap between words, as in the debug view
  else
    api.nvim_set_current_win(win)
  end
  vim.bo[buf].modifiable = true
  api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
  vim.bo[buf].modified = false
  api.nvim_win_set_cursor(0, { 1, 0 })
end

return M
