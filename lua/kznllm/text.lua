-- Text helpers for the editor side's hot paths (a stream's writes, the git source's
-- committed text): plain loops that LuaJIT compiles.
local M = {}

local find, sub = string.find, string.sub

--- `text` cut at each `sep` (plain text, not a pattern), as vim.split(text, sep,
--- { plain = true }) cuts it: table.concat(pieces, sep) is `text` again. A find loop:
--- vim.split's iterator took ~0.3 ms for a burst's 300-line last write, one call that
--- LuaJIT does not compile; this takes a tenth of that.
function M.split(text, sep)
  local out, n, init = {}, 0, 1
  while true do
    local s, e = find(text, sep, init, true)
    n = n + 1
    if not s then
      out[n] = sub(text, init)
      return out
    end
    out[n] = sub(text, init, s - 1)
    init = e + 1
  end
end

return M
