-- State kept per buffer (tables keyed by buffer number) that never outlives its buffer:
-- the context sources' caches (tree.lua's parser flags, outline.lua's watched buffers,
-- git.lua's committed text and diff), review.lua's virtual lines above line 1. One
-- BufWipeout autocmd per buffer forgets every table handed in for it; once it ran, the
-- buffer's number starts afresh (a later call for that number, were Neovim to give it
-- again, gets an autocmd of its own).
local M = {}

local tables_of = {} -- buf -> { [by_buf] = true }: what its wipe forgets

--- Drop `by_buf[buf]` for each table given when `buf` is wiped out. Called again for the
--- same buffer (with the same tables or others), it adds to the one autocmd.
function M.forget_on_wipeout(buf, ...)
  local tables = tables_of[buf]
  if not tables then
    tables = {}
    tables_of[buf] = tables
    vim.api.nvim_create_autocmd('BufWipeout', {
      buffer = buf,
      once = true,
      callback = function()
        tables_of[buf] = nil
        for by_buf in pairs(tables) do
          by_buf[buf] = nil
        end
      end,
    })
  end
  for i = 1, select('#', ...) do
    tables[select(i, ...)] = true
  end
end

return M
