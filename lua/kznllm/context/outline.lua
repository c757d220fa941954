-- The file's outline: the declaration line of each top-level definition (tree-sitter:
-- context/tree.lua) and, one level in, of those in its classes, impls, modules (at most
-- MAX_ENTRIES, MAX_TEXT bytes each), kept per changedtick. The host picks what fits its
-- share of the budget, nearest the range first (kznllm_py/prompt/sources/outline.py).
local M = {}

local api = vim.api
local tree = require('kznllm.context.tree')

local MAX_ENTRIES = 1500
local MAX_TEXT = 200
local MAX_INNER = 200 -- definitions listed inside one container

-- the last outline made: { buf, tick, lang, entries, more }; an unchanged buffer's is
-- not walked again
local cache = {}

local function walk(buf, root)
  local entries, more = {}, 0
  local function add(node, kind, depth)
    if #entries >= MAX_ENTRIES then
      more = more + 1
      return
    end
    local row = node:start() -- the definition's line (a decorator's is above it)
    local line = api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ''
    line = tree.cut(line:gsub('^%s+', ''), MAX_TEXT)
    table.insert(entries, { line = row + 1, depth = depth, kind = kind, text = line })
  end
  for child in root:iter_children() do
    if child:named() then
      local node, kind = tree.definition_at(child)
      if node then
        add(node, kind, 0)
        if tree.CONTAINERS[kind] then
          local inner = 0
          for c in node:iter_children() do
            if inner >= MAX_INNER then
              break
            end
            local body = { c }
            if c:named() and not tree.kind(c) and c:start() ~= c:end_() then
              body = {} -- a class's body: its children
              for g in c:iter_children() do
                table.insert(body, g)
              end
            end
            for _, n in ipairs(body) do
              local def, k = nil, nil
              if n:named() then
                def, k = tree.definition_at(n)
              end
              if def and inner < MAX_INNER then
                inner = inner + 1
                add(def, k, 1)
              end
            end
          end
        end
      end
    end
  end
  return entries, more
end

function M.collect(buf, range, _, done)
  tree.with_root(buf, function(root, lang)
    if not root then
      return done(nil)
    end
    local tick = api.nvim_buf_get_changedtick(buf)
    local c = cache
    if not (c.buf == buf and c.tick == tick and c.lang == lang) then
      local ok, entries, more = pcall(walk, buf, root)
      if not ok then
        return done(nil)
      end
      c = { buf = buf, tick = tick, lang = lang, entries = entries, more = more }
      cache = c
    end
    done({ entries = c.entries, more = c.more, lang = lang, cursor = range[1] + 1 })
  end)
end

return M
