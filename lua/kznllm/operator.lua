-- The Vim grammar: an operator. `{lhs}ip`, `{lhs}3j`, ... replace the text the motion
-- covers, as a visual selection of it would; `.` repeats the last one on a new motion
-- with the same query and preset, without asking again.
local M = {}

---@class kznllm.OperatorLast
---@field query string
---@field preset string|nil

---@type kznllm.OperatorLast|nil
M.last = nil

local fresh = false -- set by the mapping; a `.` repeat calls operatorfunc without it

--- The `<Plug>(kznllm-operator)` mapping (an expr mapping): arms operatorfunc.
function M.start()
  fresh = true
  vim.o.operatorfunc = "v:lua.require'kznllm.operator'.run"
  return 'g@'
end

--- operatorfunc: `kind` is 'line', 'char' or 'block' (see :help g@).
function M.run(kind)
  local vmode = ({ line = 'V', char = 'v', block = '\22' })[kind] or 'v'
  -- the motion's extent, as a visual selection of it would have it
  local span = { vmode, vim.fn.getpos("'["), vim.fn.getpos("']") }
  local kzn = require('kznllm.actions')
  if fresh or not M.last then
    fresh = false
    return kzn.prompt_fill({
      span = span,
      on_query = function(q)
        M.last = { query = q, preset = require('kznllm.presets').current_preset() }
      end,
    })
  end
  kzn.prompt_fill({ span = span, query = M.last.query, preset = M.last.preset })
end

return M
