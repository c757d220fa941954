-- The diagnostics (vim.diagnostic: language servers, linters) on the lines of the range
-- and within `NEAR` lines of it, nearest first, at most `MAX`. Sync.
local M = {}

local NEAR = 20
local MAX = 40
local SEVERITY = { 'ERROR', 'WARN', 'INFO', 'HINT' }

function M.collect(buf, range, _, done)
  local first, last = range[1], range[3]
  local found = vim.diagnostic.get(buf)
  local near = {}
  for _, d in ipairs(found) do
    local distance = d.lnum < first and first - d.lnum or (d.lnum > last and d.lnum - last or 0)
    if distance <= NEAR then
      table.insert(near, { d = d, distance = distance })
    end
  end
  table.sort(near, function(a, b)
    if a.distance ~= b.distance then
      return a.distance < b.distance
    end
    return a.d.lnum < b.d.lnum
  end)
  local out = {}
  for i = 1, math.min(#near, MAX) do
    local d = near[i].d
    out[i] = {
      line = d.lnum + 1,
      col = d.col + 1,
      severity = SEVERITY[d.severity] or 'INFO',
      message = d.message,
      source = d.source,
      code = d.code,
    }
  end
  done(out)
end

return M
