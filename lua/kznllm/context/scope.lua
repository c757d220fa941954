-- The enclosing scope: the innermost named function, method or class (tree-sitter:
-- context/tree.lua) around the range, whole (at most MAX_LINES / MAX_BYTES), with where
-- the range sits in it, so the host can tell when the lines around the selection it is
-- sent already hold it all (kznllm_py/prompt/sources/scope.py).
local M = {}

local api = vim.api
local tree = require('kznllm.context.tree')

local MAX_LINES = 3000
local MAX_DEPTH = 400 -- nodes walked up from the range
local MAX_BYTES = 192 * 1024

local function before(r1, c1, r2, c2)
  return r1 < r2 or (r1 == r2 and c1 <= c2)
end

--- The definition around `range` and its kind (the innermost named one that is not
--- wholly inside the range: a selected function's scope is what holds it).
local function enclosing(buf, root, range)
  local node = root:named_descendant_for_range(range[1], range[2], range[3], range[4])
  for _ = 1, MAX_DEPTH do -- bounded, whatever a grammar's tree looks like
    if not node then
      return nil
    end
    local def, kind = node, tree.kind(node)
    if not kind then -- `M.f = function() end` on the range's line: the statement's
      local d, k = tree.definition_at(node)
      if d and d:start() == range[1] then
        def, kind = d, k
      end
    end
    if kind then
      local sr, sc, er, ec = def:range()
      local inside = before(range[1], range[2], sr, sc) and before(er, ec, range[3], range[4])
      if not inside then
        -- the same definition seen twice (Vimscript's function_declaration in its
        -- function_definition, Python's decorators): the outer one
        local up = def:parent()
        while
          up and (up:type() == 'decorated_definition' or tree.kind(up) == kind and up:start() == sr)
        do
          def, up = up, up:parent()
        end
        local name = tree.name(buf, def)
        if name then
          return def, kind, name
        end
      end
    end
    node = node:parent() -- always up from where the walk is: it ends at the root
  end
end

--- The names of the containers around `node` (`Parser` for a method `feed`).
local function qualified(buf, node, kind, name)
  local names = { name }
  local up = node:parent()
  while up do
    local k = tree.kind(up)
    if k and k ~= 'section' and k ~= 'function' and k ~= 'method' then
      if kind == 'function' and k ~= 'module' and k ~= 'namespace' then
        kind = 'method'
      end
      table.insert(names, 1, tree.name(buf, up) or '?')
    end
    up = up:parent()
  end
  return kind, table.concat(names, '.')
end

local function scope_of(buf, root, range, lang)
  local node, kind, name = enclosing(buf, root, range)
  if not node then
    return nil
  end
  kind, name = qualified(buf, node, kind, name)
  local sr, _, er, ec = node:range()
  if ec == 0 and er > sr then
    er = er - 1 -- ends at the start of the next line
  end
  local last = math.min(er, sr + MAX_LINES - 1)
  local lines = api.nvim_buf_get_lines(buf, sr, last + 1, false)
  local size, keep = 0, 0
  for i, l in ipairs(lines) do
    if size + #l + 1 > MAX_BYTES then
      break
    end
    size, keep = size + #l + 1, i
  end
  local truncated = keep < er - sr + 1
  local out = {
    kind = kind,
    type = node:type(),
    name = name,
    lang = lang,
    start = sr + 1,
    ['end'] = er + 1,
    text = table.concat(lines, '\n', 1, keep),
    truncated = truncated,
  }
  if not truncated then
    -- the bytes of the scope before and after the range (the host compares them with
    -- the lines around it is sent)
    local base = api.nvim_buf_get_offset(buf, sr)
    out.head = api.nvim_buf_get_offset(buf, range[1]) + range[2] - base
    out.tail = size - 1 - (api.nvim_buf_get_offset(buf, range[3]) + range[4] - base)
  end
  return out
end

function M.collect(buf, range, _, done)
  tree.answer(buf, done, function(root, lang)
    return scope_of(buf, root, range, lang)
  end)
end

return M
