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
--- answer has matched is `pending`, not removed: returns hunks, pending, and how far the
--- result is settled: { n, i, j } when the first n hunks end at original line i and
--- answer line j (0-based) with equal lines after them up to the last decided hunk, so
--- that the answer's text from there on can be diffed alone at the next pass.
---@param old string[]
---@param new string[]
---@param streaming boolean
---@return kznllm.DiffHunk[] hunks
---@return string[] pending
---@return { n: integer, i: integer, j: integer }|nil settled
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
  -- settled: every decided hunk but the last one (which more text may still move), up
  -- to its end; the lines from there to the next hunk are equal in both
  local settled = nil
  if #hunks >= 2 then
    local h = hunks[#hunks - 1]
    settled = { n = #hunks - 1, i = h.i1 + #h.old, j = h.new_start + h.new_count }
  end
  if j_end < #new then
    table.insert(hunks, { new_start = j_end, new_count = #new - j_end, old = {} })
  end
  for _, h in ipairs(hunks) do
    h.i1 = nil
  end
  return hunks, vim.list_slice(old, i_end + 1, #old), settled
end

--- A streaming diff that reads and diffs only what is not settled yet. `state` (a table
--- kept between passes, {} at first) holds the settled hunks and where they end; `lines`
--- is called with the answer line to read from (0-based) and returns the answer's lines
--- from there, or nil when it cannot (the region is gone). Returns hunks and pending like
--- M.hunks, and how many lines this pass diffed. The complete answer is diffed whole
--- (M.hunks with streaming false): what is shown then never depends on this.
---@param state table
---@param old string[]
---@param lines fun(from: integer): string[]|nil
---@return kznllm.DiffHunk[]|nil hunks
---@return string[] pending
---@return integer diffed
function M.stream(state, old, lines)
  state.i, state.j, state.done = state.i or 0, state.j or 0, state.done or {}
  local tail = lines(state.j)
  if not tail then
    return nil, {}, 0
  end
  local rest = state.i > 0 and vim.list_slice(old, state.i + 1, #old) or old
  local hunks, pending, settled = M.hunks(rest, tail, true)
  local out = {}
  for _, h in ipairs(state.done) do
    table.insert(out, h)
  end
  for _, h in ipairs(hunks) do
    h.new_start = h.new_start + state.j
    table.insert(out, h)
  end
  if settled then
    for k = 1, settled.n do
      table.insert(state.done, hunks[k])
    end
    state.i, state.j = state.i + settled.i, state.j + settled.j
  end
  return out, pending, #tail
end

return M
