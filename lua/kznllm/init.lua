-- kznllm: LLM answers streamed into the buffer. This module is what a config loads at
-- startup: setup() and the keymaps, nothing more; everything else loads on first use
-- (lua/kznllm/actions.lua, presets.lua, ... reached through this table).
local M = {}

local api = vim.api
local config = require('kznllm.config')

-- the options in force (lua/kznllm/config.lua holds the defaults)
M.config = config.options

-- the rest of the API, loaded on first use: require('kznllm').prompt_fill, .status, ...
local API = { 'kznllm.actions', 'kznllm.presets', 'kznllm.capture', 'kznllm.apply' }
setmetatable(M, {
  __index = function(_, key)
    for _, name in ipairs(API) do
      local v = require(name)[key]
      if v ~= nil then
        return v
      end
    end
  end,
})

--- `:help kznllm` after an install that did not run `:helptags` (no plugin manager):
--- the tags are made once, when doc/tags is missing (a stat, nothing more, after that).
local function ensure_helptags()
  -- the plugin's directory: this file is <root>/lua/kznllm/init.lua
  local root = debug.getinfo(1, 'S').source:sub(2):gsub('/lua/kznllm/init%.lua$', '')
  local doc = root .. '/doc'
  if not vim.uv.fs_stat(doc .. '/tags') and vim.uv.fs_stat(doc .. '/kznllm.txt') then
    pcall(vim.cmd.helptags, vim.fn.fnameescape(doc))
  end
end

--- A mapping through the API (vim.keymap would load its module at startup).
local function map(mode, lhs, fn, desc, expr)
  api.nvim_set_keymap(mode, lhs, '', { callback = fn, desc = desc, expr = expr, noremap = true })
end

function M.setup(opts)
  ensure_helptags()
  M.config = config.set(opts)
  local host = package.loaded['kznllm.host'] -- loaded: a host may run (nothing required here)
  if host and host.chan then
    host.configure() -- it validates them and says what is wrong, once
  elseif opts and opts.presets and #opts.presets > 0 and not M.config.prestart then
    -- reported now, with the field and the reason, not as an error at first use (with
    -- prestart, the host started at the first idle moment checks them: a Python process
    -- at every start of Neovim only for this would double the start's cost)
    require('kznllm.host').check_presets(opts.presets)
  end
  -- the host starts the first time Neovim is idle (:help kznllm-prestart); false: at first use
  local group = api.nvim_create_augroup('kznllm_prestart', { clear = true })
  if M.config.prestart and not (host and host.chan) then
    api.nvim_create_autocmd({ 'CursorHold', 'CursorHoldI' }, {
      group = group,
      once = true,
      callback = function()
        require('kznllm.host').prestart()
      end,
    })
  end
  local km = M.config.keymaps or {}
  if km.fill then
    map('n', km.fill, function()
      M.prompt_fill({ mode = 'n' })
    end, 'kznllm: answer at the cursor')
    map('x', km.fill, function()
      M.prompt_fill({ mode = vim.fn.mode() })
    end, 'kznllm: replace the selection')
  end
  if km.debug then
    map('n', km.debug, function()
      M.prompt_fill({ mode = 'n', debug = true })
    end, 'kznllm: show the request, then the answer, in a scratch buffer')
    map('x', km.debug, function()
      M.prompt_fill({ mode = vim.fn.mode(), debug = true })
    end, 'kznllm: debug view of a replace request')
  end
  if km.preset then
    map('n', km.preset, function()
      M.select_preset()
    end, 'kznllm: pick the preset')
  end
  if km.history then
    map('n', km.history, function()
      M.history()
    end, 'kznllm: toggle the history sidebar')
  end
  -- the operator: g@ with operatorfunc, so `.` repeats it (lua/kznllm/operator.lua)
  map('n', '<Plug>(kznllm-operator)', function()
    return require('kznllm.operator').start()
  end, 'kznllm: replace what the motion covers', true)
  map('n', '<Plug>(kznllm-operator-line)', function()
    return require('kznllm.operator').start() .. '_'
  end, 'kznllm: replace the current line(s)', true)
  if km.operator then
    local o = { desc = 'kznllm: operator' }
    api.nvim_set_keymap('n', km.operator, '<Plug>(kznllm-operator)', o)
    api.nvim_set_keymap('n', km.operator .. km.operator:sub(-1), '<Plug>(kznllm-operator-line)', o)
  end
end

return M
