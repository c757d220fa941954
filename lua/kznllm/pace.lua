-- What writes cost the editor, told to the host, which paces its writes by it
-- (kznllm_py/stream/coalesce.py Pace): Neovim's own CPU time between two writes of a job,
-- which holds the write, its on_bytes listeners (treesitter, LSP change tracking) and
-- the redraw and reparse it caused. Cheap: one getrusage() per write.
local M = {}

---@type table<integer, number> job id -> process CPU seconds at its last write
local last = {}

local function cpu()
  local ru = vim.uv.getrusage()
  if not ru then
    return nil
  end
  return ru.utime.sec + ru.utime.usec / 1e6 + ru.stime.sec + ru.stime.usec / 1e6
end

--- Called after each write of job `id`: reports the CPU seconds since its previous
--- write (nothing for the first).
function M.wrote(id)
  local now = cpu()
  if not now then
    return
  end
  local before = last[id]
  last[id] = now
  if before then
    pcall(require('kznllm.host').notify, 'pace', { id = id, cpu = now - before })
  end
end

function M.forget(id)
  last[id] = nil
end

return M
