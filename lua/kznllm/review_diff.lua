-- The diff a review shows, from Neovim's own C diff (vim.diff, xdiff): linear enough
-- that a 2,500-line region diffs in a few milliseconds, so it runs in the editor, where
-- the region's text already is, and never on the host's loop. Pure: lines in, hunks out.
local M = {}

---@class kznllm.DiffHunk
---@field new_start integer 0-based first answer line of the hunk (where a deletion shows)
---@field new_count integer answer lines in it (0: original lines were only removed)
---@field old string[] the original lines it replaces (empty: only added)

--- The hunks between `old` and `new` (lists of lines). With `streaming`, the answer's
--- last line may still grow (it is left out) and the original past the last line the
--- answer has matched is `pending`, not removed: returns hunks, pending, compared.
---@param old string[]
---@param new string[]
---@param streaming boolean
---@return kznllm.DiffHunk[] hunks
---@return string[] pending
function M.hunks(old, new, streaming)
  if streaming then
    new = vim.list_slice(new, 1, #new - 1)
  end
  local a = #old > 0 and table.concat(old, '\n') .. '\n' or ''
  local b = #new > 0 and table.concat(new, '\n') .. '\n' or ''
  ---@type integer[][]
  local idx = vim.diff(a, b, { result_type = 'indices' }) --[[@as integer[][] ]]
  local hunks = {}
  for _, d in ipairs(idx) do
    local sa, ca, sb, cb = d[1], d[2], d[3], d[4]
    local i1 = ca == 0 and sa or sa - 1 -- 0-based
    local j1 = cb == 0 and sb or sb - 1
    table.insert(
      hunks,
      { new_start = j1, new_count = cb, old = vim.list_slice(old, i1 + 1, i1 + ca), i1 = i1 }
    )
  end
  if not streaming then
    for _, h in ipairs(hunks) do
      h.i1 = nil
    end
    return hunks, {}
  end
  -- past the last equal run nothing is decided yet: the answer's lines there are new
  -- (an addition so far), the original's are pending
  local i_end, j_end = #old, #new
  local last = hunks[#hunks]
  if last and (last.i1 + #last.old >= #old or last.new_start + last.new_count >= #new) then
    -- the last hunk reaches an end: the last equal run (if any) is before it
    i_end, j_end = last.i1, last.new_start
    table.remove(hunks)
  end
  if j_end < #new then
    table.insert(hunks, { new_start = j_end, new_count = #new - j_end, old = {} })
  end
  for _, h in ipairs(hunks) do
    h.i1 = nil
  end
  return hunks, vim.list_slice(old, i_end + 1, #old)
end

return M
