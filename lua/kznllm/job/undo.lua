-- Undo: which of a job's writes are still in effect, and where an undo step starts.
-- Shared by the job's writes and the review's rejects.
local M = {}

-- Is change `seq` on the path from the root of the undo tree to the current state
-- `target`? (undotree(): each entry's `alt` holds the branches that replace it.)
local function on_path(entries, target, seq, seen)
  for _, e in ipairs(entries) do
    for _, branch in ipairs(e.alt or {}) do
      local found, yes = on_path(branch, target, seq, seen)
      if found then
        return true, yes
      end
    end
    seen = seen or e.seq == seq
    if e.seq == target then
      return true, seen
    end
  end
  return false, false
end

-- (in the job's buffer) is the job's last write still in effect? An undo, `g-` or
-- `:undo N` past it, or an undo followed by new edits (another branch), says no.
function M.in_effect(job)
  local cur = vim.fn.changenr()
  if cur == job.seq then
    return true
  end
  local tree = vim.fn.undotree(job.buf)
  if tree.seq_cur == 0 then
    return false
  end
  local found, yes = on_path(tree.entries, tree.seq_cur, job.seq, false)
  return found and yes
end

--- Start the next change's undo step: joined to the buffer's last one (`join`), or a
--- step of its own (see :help undo-break). In the buffer the change is made in.
function M.step(join)
  if join then
    pcall(vim.cmd, 'undojoin')
  else
    vim.o.undolevels = vim.o.undolevels
  end
end

return M
