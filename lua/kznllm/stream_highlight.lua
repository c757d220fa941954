-- While an answer streams into a buffer that treesitter highlights, the highlighter
-- keeps the tree it had instead of re-parsing at every write. Each write still edits
-- that tree (Neovim does it in on_bytes), so the code around the answer keeps its
-- colours, in place; the answer itself is highlighted when the stream pauses
-- (`quiet_ms` without a write) and when it ends.
--
-- Why: text that does not parse (prose in a C file, half a function) is an ERROR node
-- that tree-sitter cannot reuse, so each re-parse goes over the whole answer so far:
-- 3 ms per write at the start of a 2,000-token answer in a 3,000-line C file, 38 ms
-- near its end (measured here), and an async parse that a new write restarts from
-- scratch. With the tree held, a write costs its redraw.
--
-- Only the highlighter's view of the tree is held: `vim.treesitter.get_parser()` and
-- everything else that parses (folds, textobjects, other plugins) see the real tree.
--
-- Private API, behind a feature check: the hold swaps the highlighter's `tree` field
-- and redraws with `nvim__redraw` (no public call re-runs a buffer's decorations). A
-- Neovim without either (an upgrade that changed them) streams as 'live' does, with
-- public API only: the highlighter re-parses at each write, slower, never wrong.
local M = {}

local api = vim.api

-- false: the public path only, as on a Neovim without the private parts (tests force it)
M.use_private = true

---@class kznllm.HeldHighlight
---@field hl table the buffer's TSHighlighter
---@field real table its LanguageTree
---@field proxy table what the highlighter sees instead while held
---@field count integer jobs streaming into the buffer
---@field last integer vim.uv.now() at the last write
---@field quiet integer setup()'s quiet_ms when the hold began (read once, not per redraw)
---@field timer uv.uv_timer_t|nil

---@type table<integer, kznllm.HeldHighlight>
local held = {}

--- `buf` (0 or nil: the current one), and its held highlighter if there is one.
local function held_of(buf)
  buf = (buf == 0 or buf == nil) and api.nvim_get_current_buf() or buf
  return buf, held[buf]
end

--- setup()'s stream_highlight, read safely: a mode other than 'live' holds, a quiet_ms
--- that is not a number of milliseconds (0 or more) is the default's 150.
local function options()
  local o = require('kznllm.config').options.stream_highlight
  o = type(o) == 'table' and o or {}
  local quiet = tonumber(o.quiet_ms)
  if not quiet or quiet < 0 or quiet ~= quiet or quiet == math.huge then
    quiet = 150
  end
  return { mode = o.mode == 'live' and 'live' or 'pause', quiet_ms = math.floor(quiet) }
end

local function redraw(buf)
  if type(api.nvim__redraw) == 'function' then
    -- as the highlighter itself does when an async parse ends; on_win then parses
    pcall(api.nvim__redraw, { buf = buf, valid = false, flush = false })
  else
    vim.cmd('redraw!') -- public: the whole screen, each line's decorations again
  end
end

--- The feature check: the private parts a hold needs are there and look as expected.
local function can_hold(hl)
  local tree = type(hl) == 'table' and hl.tree
  return M.use_private
    and type(api.nvim__redraw) == 'function'
    and type(tree) == 'table'
    and type(tree.trees) == 'function'
    and type(tree.parse) == 'function'
end

--- A stand-in for the LanguageTree `real`: its methods run on `real`, its fields are
--- `real`'s, and `parse` hands back the held (edited) trees until the buffer is quiet.
local function proxy_of(h)
  local real = h.real
  local proxy = {}
  function proxy.parse(_, range, on_parse)
    if vim.uv.now() - h.last >= h.quiet then
      return real:parse(range, on_parse)
    end
    return real:trees()
  end
  return setmetatable(proxy, {
    __index = function(_, key)
      local v = real[key]
      if type(v) == 'function' then
        return function(self, ...)
          if self == proxy then
            return v(real, ...)
          end
          return v(self, ...)
        end
      end
      return v
    end,
  })
end

--- A job starts streaming into `buf`: hold its highlighter's tree (a no-op when
--- treesitter does not highlight the buffer, or when turned off in setup()). True when
--- held: the job then calls `release` at its end.
---@return boolean
function M.hold(buf)
  local h
  buf, h = held_of(buf)
  if h then
    h.count = h.count + 1
    return true
  end
  local o = options()
  if o.mode ~= 'pause' then
    return false
  end
  local ok, highlighter = pcall(require, 'vim.treesitter.highlighter')
  local hl = ok and highlighter.active[buf]
  if not can_hold(hl) then
    return false -- no highlighter, or not the one this was made for: 'live'
  end
  h = { hl = hl, real = hl.tree, count = 1, last = vim.uv.now(), quiet = o.quiet_ms }
  h.proxy = proxy_of(h)
  hl.tree = h.proxy
  held[buf] = h
  return true
end

--- After each write of a job into `buf`: the answer is highlighted once writes stop
--- for `quiet_ms` (a slow provider, a pause in the stream).
function M.wrote(buf)
  local h
  buf, h = held_of(buf)
  if not h then
    return
  end
  h.last = vim.uv.now()
  h.timer = h.timer or vim.uv.new_timer()
  h.timer:start(
    h.quiet,
    0,
    vim.schedule_wrap(function()
      if held[buf] == h and api.nvim_buf_is_valid(buf) then
        redraw(buf)
      end
    end)
  )
end

--- A job that streamed into `buf` ended: the last one gives the highlighter its tree
--- back and has it parse what was written.
function M.release(buf)
  local h
  buf, h = held_of(buf)
  if not h then
    return
  end
  h.count = h.count - 1
  if h.count > 0 then
    return
  end
  held[buf] = nil
  if h.timer then
    h.timer:stop()
    h.timer:close()
  end
  if h.hl.tree == h.proxy then
    h.hl.tree = h.real
  end
  if api.nvim_buf_is_valid(buf) then
    redraw(buf)
  end
end

--- Whether the highlighter of `buf` is held now (for tests and :checkhealth).
function M.is_held(buf)
  return select(2, held_of(buf)) ~= nil
end

return M
