-- The CLI's scope and outline (`kznllm fill --file F --scope --outline`): run by a
-- headless Neovim the host starts with no user config, plugins, shada, swap or modelines
-- (kznllm_py/prompt/sources/headless.py), as
--   nvim --clean -u NONE -i NONE -n --noplugin -l headless.lua LUA_DIR FT NAME R1 C1 R2 C2 BUDGET WHAT
-- The file's text comes on stdin (the host read it once, capped); it goes into a scratch
-- buffer (no :edit: no modeline, no autocmd), and the editor's own sources
-- (context/scope.lua, outline.lua on tree.lua) collect from it. One JSON object on
-- stdout: { ft, lang?, scope?, outline?, error? }. Required as a module (`...` is then its
-- name) it runs nothing: it is only ever a script of its own process.
local M = {}

function M.run()
  vim.o.eventignore = 'all'
  vim.o.modeline = false
  vim.o.swapfile = false

  local a = _G.arg
  -- the plugin's lua/ folder, on package.path only: nothing of it runs but these modules
  package.path = a[1] .. '/?.lua;' .. a[1] .. '/?/init.lua;' .. package.path
  local ft, name, budget, what = a[2], a[3], tonumber(a[8]), a[9] or ''
  local range = { tonumber(a[4]), tonumber(a[5]), tonumber(a[6]), tonumber(a[7]) }

  local out = {}
  local function finish()
    io.stdout:write(vim.json.encode(out))
    io.stdout:flush()
  end

  local text = io.stdin:read('*a') or ''
  local lines = vim.split(text, '\n', { plain = true })
  if lines[#lines] == '' and #lines > 1 then
    table.remove(lines) -- the file's last line break
  end
  if ft == '' then
    ft = vim.filetype.match({ filename = name, contents = lines }) or ''
  end
  out.ft = ft

  local buf = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].filetype = ft -- events ignored: no ftplugin, no FileType autocmd

  local lang = vim.treesitter.language.get_lang(ft) or ft
  out.lang = lang
  -- language.add returns nil (0.11) or throws (earlier) when there is no parser
  local ok, added = pcall(vim.treesitter.language.add, lang)
  if ft == '' or not (ok and added) then
    out.error = 'no parser'
    return finish()
  end

  local waiting = 0
  local opts = { budget = budget }
  for _, source in ipairs({ 'scope', 'outline' }) do
    if what:find(source, 1, true) then
      waiting = waiting + 1
      local ok, err = pcall(
        require('kznllm.context.' .. source).collect,
        buf,
        range,
        opts,
        function(v)
          out[source] = v or vim.NIL
          waiting = waiting - 1
        end
      )
      if not ok then
        out.error = source .. ': ' .. tostring(err)
        waiting = waiting - 1
      end
    end
  end
  -- the sources answer in a later tick (an asynchronous parse): run the loop until they
  -- have (the host kills this process at its own deadline)
  vim.wait(60000, function()
    return waiting <= 0
  end, 5)
  finish()
end

if select('#', ...) == 0 then -- nvim -l: run; require(): the module only
  M.run()
end

return M
