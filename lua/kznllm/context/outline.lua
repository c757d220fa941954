-- The file's outline: the declaration line of each top-level definition (tree-sitter:
-- context/tree.lua) and, one level in, of those in its classes, impls, modules, kept per
-- changedtick; those nearest the range are sent (MAX_TEXT bytes each), with how
-- many more there are. The host keeps what fits its share of the budget, nearest the
-- range first (kznllm_py/prompt/sources/outline.py).
local M = {}

local api = vim.api
local tree = require('kznllm.context.tree')
local later = require('kznllm.later')
local per_buffer = require('kznllm.per_buffer')

-- sent, the nearest the range: about what the outline's share of the budget holds (10%,
-- ~16 tokens an entry), 40 to 300 (the host keeps what fits)
local function max_entries(budget)
  return math.min(300, math.max(40, math.floor((tonumber(budget) or 16000) / 160)))
end
local MAX_TEXT = 200
local MAX_INNER = 200 -- definitions listed inside one container

-- the last outline made: { buf, tick, lang, defs }; an unchanged buffer's is not walked
-- again
local cache = {}

--- The definitions of the file: { row, depth, kind } each, in file order (no text yet).
local function walk(root)
  local defs = {}
  for _, child in ipairs(root:named_children()) do
    local node, kind = tree.definition_at(child)
    if node then
      table.insert(defs, { node:start(), 0, kind })
      if tree.CONTAINERS[kind] then
        local inner = 0
        for _, c in ipairs(node:named_children()) do
          if inner >= MAX_INNER then
            break
          end
          local body = { c }
          if not tree.kind(c) and c:start() ~= c:end_() then
            body = c:named_children() -- a class's body: its children
          end
          for _, n in ipairs(body) do
            local def = tree.definition_at(n)
            if def and inner < MAX_INNER then
              inner = inner + 1
              -- the definition's line (a decorator's is above it)
              table.insert(defs, { def:start(), 1 })
            end
          end
        end
      end
    end
  end
  return defs
end

--- At most `most` of `defs`, those nearest `row` first, back in file order, each
--- with its declaration line: { line, depth, text } (1-based line).
local function entries_near(buf, defs, row, most)
  local lo, hi = 1, #defs -- the first definition at or after `row`, by bisection
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if defs[mid][1] < row then
      lo = mid + 1
    else
      hi = mid
    end
  end
  -- then outwards, the nearer of the two sides each time
  local a, b = lo - 1, lo
  while b - a - 1 < math.min(most, #defs) do
    local da = a >= 1 and row - defs[a][1] or math.huge
    local db = b <= #defs and defs[b][1] - row or math.huge
    if da <= db then
      a = a - 1
    else
      b = b + 1
    end
  end
  local out = {}
  for i = a + 1, b - 1 do
    local d = defs[i]
    local line = api.nvim_buf_get_lines(buf, d[1], d[1] + 1, false)[1] or ''
    out[#out + 1] = { d[1] + 1, d[2], tree.cut(line:gsub('^%s+', ''), MAX_TEXT) }
  end
  return out
end

local REFRESH_MS = 300 -- after the last change: the outline is walked again, in the background
local watched = {} -- buffers whose changes restart the refresh's wait

--- The outline of the last buffer filled is walked again `REFRESH_MS` after its last
--- change, so that a fill after a pause finds it made (a walk of a 16,000-line file takes
--- a few ms; at the keypress only when it was changed just before).
local refresh_later = later.debounced(REFRESH_MS, function(buf)
  local c = cache
  if c.buf ~= buf or not api.nvim_buf_is_valid(buf) then
    return
  end
  tree.with_root(buf, function(root, lang)
    local tick = api.nvim_buf_get_changedtick(buf)
    if root and cache.buf == buf and cache.tick ~= tick then
      local ok, defs = pcall(walk, root)
      if ok then
        cache = { buf = buf, tick = tick, lang = lang, defs = defs }
      end
    end
  end)
end)

local function watch(buf)
  if watched[buf] then
    return
  end
  watched[buf] = true
  api.nvim_create_autocmd({ 'TextChanged', 'TextChangedI' }, {
    buffer = buf,
    group = api.nvim_create_augroup('kznllm_outline_' .. buf, { clear = true }),
    callback = function(ev)
      if not watched[ev.buf] then
        return true
      end
      if cache.buf == ev.buf then
        refresh_later(ev.buf)
      end
    end,
  })
  per_buffer.forget_on_wipeout(buf, watched)
end

function M.collect(buf, range, opts, done)
  tree.answer(buf, done, function(root, lang)
    local tick = api.nvim_buf_get_changedtick(buf)
    local c = cache
    if not (c.buf == buf and c.tick == tick and c.lang == lang) then
      c = { buf = buf, tick = tick, lang = lang, defs = walk(root) }
      cache = c
    end
    watch(buf)
    -- the entries the lines sent around the range show (`opts.around` lines each side:
    -- the editor's context_lines) the host leaves out: as many more are gathered, so
    -- that those beyond them fill the outline
    local away = opts and tonumber(opts.around) or 0
    local inside = 0
    for _, d in ipairs(c.defs) do
      if d[1] >= range[1] - away and d[1] <= range[3] + away then
        inside = inside + 1
      end
    end
    local most = max_entries(opts and opts.budget) + inside
    if not (c.row == range[1] and c.most == most) then -- the same fill again: as it was
      c.entries, c.row, c.most = entries_near(buf, c.defs, range[1], most), range[1], most
    end
    return { entries = c.entries, more = #c.defs - #c.entries, cursor = range[1] + 1 }
  end)
end

return M
