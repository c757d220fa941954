-- The buffer's syntax tree for the scope and outline sources: Neovim's own tree-sitter
-- (vim.treesitter), with whatever parsers it has (bundled: C, Lua, Vimscript, vimdoc,
-- markdown, query; more where the user installed them, e.g. nvim-treesitter's). Never a
-- synchronous full parse at the keypress: the tree the highlighter (or an earlier fill)
-- keeps is used when it is valid; else the parse runs asynchronously
-- (LanguageTree:parse(false, on_parse)) and the source answers when it is done.
local M = {}

local api = vim.api
local per_buffer = require('kznllm.per_buffer')

-- buffer -> { ft = its filetype then, ok = whether it has a parser }: a parser this
-- module made is then a cached lookup (get_parser), and a filetype without one is not
-- looked for again; a first one (loading the language) is made in the tick after the
-- keypress, not in it
local made = {}

--- What kind of definition `node` is ('function', 'method', 'class', 'struct', ...), or
--- nil: generic node-type matching that holds across grammars (function_definition,
--- function_declaration, function_item, method_declaration, class_specifier, impl_item,
--- struct_specifier with a body, mod_item, namespace_definition, markdown's section, ...).
local WORDS = {
  ['function'] = 'function',
  method = 'method',
  constructor = 'method',
  class = 'class',
  struct = 'struct',
  union = 'union',
  enum = 'enum',
  impl = 'impl',
  trait = 'trait',
  interface = 'interface',
  module = 'module',
  mod = 'module',
  namespace = 'namespace',
  section = 'section',
}
local SUFFIXES = { 'definition', 'declaration', 'item', 'specifier' }

-- node type -> { kind, needs_body } or false: each type's name is read once
local by_type = {}

local function type_kind(t)
  local word = WORDS[t]
  if word then
    return { word, false }
  end
  for _, suffix in ipairs(SUFFIXES) do
    local base = t:match('^(.-)_' .. suffix .. '$')
    if base then
      word = WORDS[base:match('([%a]+)$') or '']
      -- `struct point p;` names a struct, it does not define one: a body defines it
      return word and { word, suffix == 'specifier' } or false
    end
  end
  return false
end

function M.kind(node)
  local t = node:type()
  local k = by_type[t]
  if k == nil then
    k = type_kind(t)
    by_type[t] = k
  end
  if not k or (k[2] and not node:field('body')[1]) then
    return nil
  end
  return k[1]
end

-- the kinds that hold definitions of their own (an outline goes one level into them)
M.CONTAINERS = {
  class = true,
  impl = true,
  trait = true,
  interface = true,
  module = true,
  namespace = true,
  section = true,
}

local MAX_WRAPPED = 64 -- children of a wrapper of a definition (decorators and it)

--- `node` if it is a definition, or one that starts on its line up to two levels in
--- (`typedef struct {...} t;`, `M.f = function() end`, `export function f()`).
function M.definition_at(node)
  local kind = M.kind(node)
  if kind then
    return node, kind
  end
  -- Python's decorated_definition: its decorators, then the definition. A node of many
  -- children (a file's root: a fill on a blank line between functions) is no such
  -- wrapper, and a field is looked up through every child (~1 ms in 16,000 lines of C)
  local def = node:named_child_count() <= MAX_WRAPPED and node:field('definition')[1]
  if def and M.kind(def) then
    return def, M.kind(def)
  end
  local row = node:start()
  local level = { node }
  for _ = 1, 2 do
    local next_level = {}
    for _, n in ipairs(level) do
      for i = 0, math.min(n:named_child_count(), 3) - 1 do
        local c = n:named_child(i)
        if c:start() == row then
          kind = M.kind(c)
          if kind then
            return c, kind
          end
          table.insert(next_level, c)
        end
      end
    end
    level = next_level
  end
end

local MAX_NAME = 120

--- `s` cut to at most `n` bytes, on a character's start.
function M.cut(s, n)
  if #s <= n then
    return s
  end
  return s:sub(1, n + vim.str_utf_start(s, n + 1) - 1)
end

local function text_of(buf, node)
  local sr, sc, er, ec = node:range()
  if er > sr then -- a name on one line only
    er, ec = sr, -1
  end
  local ok, parts = pcall(api.nvim_buf_get_text, buf, sr, sc, er, ec, {})
  return ok and M.cut(parts[1] or '', MAX_NAME) or nil
end

local NAME_FIELDS = { 'name', 'heading_content' }

local function named_field(node)
  for _, f in ipairs(NAME_FIELDS) do
    local n = node:field(f)[1]
    if n then
      return n
    end
  end
  -- C's declarators: function_definition > function_declarator > identifier
  local d, depth = node:field('declarator')[1], 0
  while d and depth < 6 do
    local inner = d:field('declarator')[1] or d:field('name')[1]
    if not inner then
      return d
    end
    d, depth = inner, depth + 1
  end
  return nil
end

--- The name of definition `node` (nil: anonymous), read from the buffer, at most a line.
function M.name(buf, node)
  local n = named_field(node)
  if not n then -- in its header (Vimscript's function_declaration, a markdown heading)
    for i = 0, math.min(node:named_child_count(), 4) - 1 do
      local c = node:named_child(i)
      local t = c:type()
      if t:match('declaration$') or t:match('heading') then
        n = named_field(c)
        if n then
          break
        end
      end
    end
  end
  if not n then -- `M.f = function() end`, `const f = () => {}`: the statement's name
    local row = node:start()
    local up = node:parent()
    for _ = 1, 3 do
      if not up or up:start() ~= row or not up:parent() then
        break
      end
      n = named_field(up)
      for i = 0, math.min(up:named_child_count(), 2) - 1 do
        n = n or named_field(up:named_child(i))
      end
      if n then
        break
      end
      up = up:parent()
    end
  end
  return n and text_of(buf, n) or nil
end

-- filetype -> { ok = whether a parser for its language is loaded or on 'runtimepath',
-- rtp = the 'runtimepath' it was looked for on (a parser installed since is found) }
local parser_for = {}

local function has_parser(ft)
  if ft == '' then
    return false
  end
  local known, rtp = parser_for[ft], vim.o.runtimepath
  if not known or (not known.ok and known.rtp ~= rtp) then
    local lang = vim.treesitter.language.get_lang(ft) or ft
    local loaded = pcall(vim.treesitter.language.inspect, lang)
    local ok = loaded or #api.nvim_get_runtime_file('parser/' .. lang .. '.*', false) > 0
    known = { ok = ok, rtp = rtp }
    parser_for[ft] = known
  end
  return known.ok
end

--- Call `cb(root, lang)` once with the root of `buf`'s tree (nil: no parser for its
--- filetype, or the buffer went away or changed while it was parsed).
function M.with_root(buf, cb)
  local tick = api.nvim_buf_get_changedtick(buf)
  local function answer(trees, parser)
    if not trees or not trees[1] or not api.nvim_buf_is_valid(buf) then
      return cb(nil)
    end
    if api.nvim_buf_get_changedtick(buf) ~= tick then
      return cb(nil)
    end
    return cb(trees[1]:root(), parser:lang())
  end
  local function go(parser)
    if not parser then
      return cb(nil)
    end
    if parser:is_valid(true) then
      return answer(parser:trees(), parser)
    end
    parser:parse(false, function(err, trees)
      answer(not err and trees or nil, parser)
    end)
  end
  local hl = vim.treesitter.highlighter.active[buf]
  if hl and hl.tree then
    return go(hl.tree)
  end
  local ft = vim.bo[buf].filetype
  if not has_parser(ft) then -- answered now: no tick's delay for a buffer without one
    return cb(nil)
  end
  local known = made[buf]
  if known and known.ft == ft then
    if not known.ok then
      return cb(nil)
    end
    local ok, parser = pcall(vim.treesitter.get_parser, buf, nil, { error = false })
    return go(ok and parser or nil)
  end
  vim.schedule(function()
    if not api.nvim_buf_is_valid(buf) then
      return cb(nil)
    end
    local ok, parser = pcall(vim.treesitter.get_parser, buf, nil, { error = false })
    per_buffer.forget_on_wipeout(buf, made)
    made[buf] = { ft = ft, ok = ok and parser ~= nil }
    go(ok and parser or nil)
  end)
end

--- A tree source's answer: `done(fn(root, lang))` with the root of `buf`'s tree, or
--- done(nil) when there is none (see with_root) or fn fails (a grammar's surprise costs
--- the source, never the fill).
function M.answer(buf, done, fn)
  M.with_root(buf, function(root, lang)
    local ok, found = false, nil
    if root then
      ok, found = pcall(fn, root, lang)
    end
    done(ok and found or nil)
  end)
end

return M
