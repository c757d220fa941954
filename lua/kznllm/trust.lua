-- :KznTrust: the project's templates and rules files (AGENTS.md, ...) are used only once
-- trusted, with Neovim's own trust database (the one :trust and exrc use). The host lists
-- the files (kznllm_py/fill/job.py project_review()); each goes through vim.secure.read(),
-- which shows the path and asks: [i]gnore, [v]iew, [d]eny, [a]llow. Allow stores the
-- file's hash: a changed file is asked about again.
local M = {}

local notify = require('kznllm.notify').notify

function M.start()
  local preset = require('kznllm.presets').current_preset()
  require('kznllm.host').notify('trust', {
    cwd = vim.fn.getcwd(),
    path = vim.api.nvim_buf_get_name(0), -- its project's rules (the git root of the file)
    preset = preset or vim.NIL,
  })
end

--- From the host: `files` (real paths) to ask about, `lines` for those that cannot be
--- trusted (links, too large) or were denied, `where` the folders looked in (or nil).
function M.review(files, lines, where)
  for _, line in ipairs(lines) do
    notify('kznllm: ' .. line, vim.log.levels.WARN)
  end
  if #files == 0 then
    if where == vim.NIL or where == nil then
      return notify('kznllm: no project templates (.kzn/templates) or rules files here')
    end
    return notify('kznllm: nothing to trust in ' .. where)
  end
  local trusted = 0
  for _, path in ipairs(files) do
    -- vim.secure.read() throws on a file it cannot hash (a NUL byte makes its sha256()
    -- a Blob): that file is named, and the next ones are still asked about
    local ok, read = pcall(vim.secure.read, path)
    if not ok then
      local why = tostring(read):match('[^\n]*')
      notify(
        ("kznllm: %s cannot be trusted: Neovim's trust cannot read it (%s)"):format(
          vim.fn.strtrans(path),
          why
        ),
        vim.log.levels.WARN
      )
    elseif read then
      trusted = trusted + 1
    end
  end
  -- after vim.secure.read()'s question (a confirm() that scrolls the screen): said once
  -- the screen is redrawn, so it asks for no ENTER
  require('kznllm.notify').after_pick(
    ('kznllm: %d of %d project files trusted'):format(trusted, #files)
  )
end

return M
