-- Changes to a buffer, as a job or a review needs them: one check, scheduled after a
-- batch of changes (never inside on_lines, where the buffer may not be touched), while
-- something there still wants it. Shared by the jobs and the review.
local M = {}

local api = vim.api
local attached = {} -- key -> buf -> true
local queued = {} -- key -> buf -> true

--- Call `check(buf)` once after each batch of changes to `buf` while `wanted(buf)`
--- (when it is not, the watch ends); a change made while `ours()` is not checked.
---@param key string who watches (one watch per key and buffer)
---@param buf integer
---@param wanted fun(buf: integer): boolean
---@param check fun(buf: integer)
---@param ours (fun(): boolean)|nil
function M.watch(key, buf, wanted, check, ours)
  attached[key] = attached[key] or {}
  queued[key] = queued[key] or {}
  if attached[key][buf] then
    return
  end
  attached[key][buf] = true
  api.nvim_buf_attach(buf, false, {
    on_lines = function()
      if not wanted(buf) then
        attached[key][buf] = nil
        return true -- detach
      end
      if (ours and ours()) or queued[key][buf] then
        return
      end
      queued[key][buf] = true
      vim.schedule(function()
        queued[key][buf] = nil
        check(buf)
      end)
    end,
    on_detach = function()
      attached[key][buf] = nil
    end,
  })
end

return M
