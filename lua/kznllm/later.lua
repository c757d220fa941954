-- Work put off until the user pauses: the context sources' refresh after an edit.
local M = {}

--- `fn` run on Neovim's loop `ms` after the last call of the function returned (each
--- call restarts the wait, with its own arguments): one timer, made at the first call.
function M.debounced(ms, fn)
  local timer
  return function(...)
    local args = { n = select('#', ...), ... }
    timer = timer or vim.uv.new_timer()
    timer:stop()
    timer:start(
      ms,
      0,
      vim.schedule_wrap(function()
        fn(unpack(args, 1, args.n))
      end)
    )
  end
end

return M
