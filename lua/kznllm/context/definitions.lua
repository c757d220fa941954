-- The definitions of the names the range uses (with no selection: the lines near the
-- cursor), from the buffer's attached language servers: at the keypress one
-- textDocument/definition per name, the called ones first. Answers when every request
-- has, or when the fill goes out (kznllm.context's stop: at its deadline, or later when
-- the query took longer to type: what answered meanwhile is used), cancelling what is
-- outstanding, with what answered by then; at the latest after M.PATIENCE_MS. No hover
-- is asked: the definition's own text carries its signature and doc, and pylsp takes
-- ~1.7 s for one hover, which delays every definition asked after it
-- (bench/lsp_context_bench.py).
-- Nothing, at once, when no attached server gives definitions. Each answer is bounded
-- here (locations kept, lines sent); the host confines, reads and fits them
-- (kznllm_py/prompt/sources/definitions.py).
local M = {}

local api = vim.api

local DEFINITION = 'textDocument/definition'
M.MAX_NAMES = 24 -- names asked about, the first used first
M.MAX_SCAN = 200 -- lines of the range read for names
M.MAX_SCAN_BYTES = 2000 -- bytes of one line read for names (a minified line is not)
M.NEAR = 15 -- with no selection: lines each side of the cursor
M.PER_ANSWER = 4 -- locations kept from one answer
M.MAX_SEEN = 2000 -- locations looked at in one answer
M.MAX_FOUND = 64
M.MAX_LINES = 200 -- lines sent of a definition in a loaded buffer (from its name's line)
M.LEAD = 20 -- lines sent above a definition in a loaded buffer (its doc comment)
M.MAX_LINE_BYTES = 1000 -- bytes sent of one such line
M.MAX_SENT_BYTES = 256 * 1024 -- of all such lines (past it, the host reads the file)
M.PATIENCE_MS = 60000 -- requests still out this long after the keypress are cancelled
M.TS_MAX_LINES = 3000 -- a loaded buffer not parsed yet is parsed for an extent up to this

-- words that are never a definition worth asking about (each one is a request)
local KEYWORDS = {}
for w in
  ([[and as assert async await break case catch char class const continue def
  default del do elif else end enum except export extern false False finally for from
  function global if import in int is lambda let local long match new nil None nonlocal
  not or pass raise return self short signed sizeof static struct switch then this
  throw true True try type typedef union unsigned until var void while with yield]]):gmatch('%S+')
do
  KEYWORDS[w] = true
end

--- The names used on rows `first`..`last` (0-based), each once, at its first use, the
--- called ones (a `(` follows) first: { name, row, col (0-based byte), line }, at most
--- MAX_NAMES. A server answers one request after another: what is called matters most.
local function names(buf, first, last)
  local calls, others, seen = {}, {}, {}
  local lines = api.nvim_buf_get_lines(buf, first, last + 1, false)
  for i, line in ipairs(lines) do
    line = #line > M.MAX_SCAN_BYTES and line:sub(1, M.MAX_SCAN_BYTES) or line
    for col, word, after in line:gmatch('%f[%w_]()([%a_][%w_]*)()') do
      if not seen[word] and not KEYWORDS[word] then
        seen[word] = true
        local use = { word, first + i - 1, col - 1, line }
        table.insert(line:match('^%s*%(', after) and calls or others, use)
        if #calls >= M.MAX_NAMES then
          return calls
        end
      end
    end
  end
  for i = 1, math.min(#others, M.MAX_NAMES - #calls) do
    calls[#calls + 1] = others[i]
  end
  return calls
end

local function position(row, col, line, encoding)
  local character = col
  if line:find('[\128-\255]') then
    character = vim.str_utfindex(line, encoding, col, false)
  end
  return { line = row, character = character }
end

--- A loaded buffer's number by its file name (built once, on the first answer).
local function loaded_buffers()
  local by_name = {}
  for _, b in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_loaded(b) then
      by_name[api.nvim_buf_get_name(b)] = b
    end
  end
  return by_name
end

local function whole(kind)
  return kind:match('_definition$')
    or kind:match('_declaration$')
    or kind:match('_item$')
    or kind:match('^class')
end

--- Whether `node`'s own name (its `name` or `declarator` field) is at `row`, `col`:
--- a definition starting above its name (`static int` on the line before `f(void)`).
local function named_by(node, row, col)
  for _, field in ipairs({ 'name', 'declarator' }) do
    for _, child in ipairs(node:field(field)) do
      if vim.treesitter.is_in_node_range(child, row, col) then
        return true
      end
    end
  end
  return false
end

--- The first and last rows (0-based) of the definition whose name is at `row`, `col`
--- of `b` by tree-sitter, when `b` has a parser and is parsed (or small enough to parse
--- now):
--- the nearest definition node around the name that starts on its row or is named by
--- it (never the function around a local).
local function ts_rows(b, row, col)
  local ok, parser = pcall(vim.treesitter.get_parser, b, nil, { error = false })
  if not ok or not parser then
    return nil
  end
  if not parser:is_valid() and api.nvim_buf_line_count(b) > M.TS_MAX_LINES then
    return nil
  end
  local found
  ok = pcall(function()
    parser:parse()
    local node =
      vim.treesitter.get_node({ bufnr = b, pos = { row, col }, ignore_injections = true })
    while node and not found do
      if node:range() < row - 2 then
        break -- a scope around the name (a local's function), not its definition
      end
      if whole(node:type()) and (node:range() == row or named_by(node, row, col)) then
        found = node
      end
      node = node:parent()
    end
    if found and found:parent() and found:parent():type():match('^decorated') then
      found = found:parent()
    end
  end)
  if not ok or not found then
    return nil
  end
  local srow, _, erow, ecol = found:range()
  if srow > row then
    return nil
  end
  return srow, ecol == 0 and erow > row and erow - 1 or erow
end

--- The project root's paths: as the working directory names it, and its real path
--- (a server names files by either).
local function roots()
  local root = vim.fs.root(vim.fn.getcwd(), '.git') or vim.fn.getcwd()
  return { root, vim.uv.fs_realpath(root) or root }
end

local function under(path, root)
  return path:sub(1, #root + 1) == root .. '/'
end

--- The location's { path, row, col } when it is a file under the project root (either
--- of `root`'s paths), else nil.
local function location(loc, root)
  if type(loc) ~= 'table' then
    return nil
  end
  local uri = loc.targetUri or loc.uri
  local range = loc.targetSelectionRange or loc.targetRange or loc.range
  if type(uri) ~= 'string' or uri:sub(1, 7) ~= 'file://' or type(range) ~= 'table' then
    return nil
  end
  local start = range.start
  local row = type(start) == 'table' and tonumber(start.line)
  if not row or row < 0 or row ~= math.floor(row) then
    return nil
  end
  local ok, path = pcall(vim.uri_to_fname, uri)
  if not ok or not (under(path, root[1]) or under(path, root[2])) then
    return nil
  end
  if path:find('/site%-packages/') or path:find('/node_modules/') then
    return nil -- the first of a server's many answers may be these: keep room for ours
  end
  return { path = path, row = row, character = tonumber(start.character) or 0 }
end

function M.collect(buf, range, opts, done)
  if not package.loaded['vim.lsp'] then
    return done(nil) -- no server ever started (and loading vim.lsp would cost ~5 ms)
  end
  local clients = vim.lsp.get_clients({ bufnr = buf, method = DEFINITION })
  if #clients == 0 then
    return done(nil)
  end
  local first, last = range[1], range[3]
  if first == last and range[2] == range[4] then -- no selection: the lines near the cursor
    first, last = math.max(0, first - M.NEAR), last + M.NEAR
  end
  local used = names(buf, first, math.min(last, first + M.MAX_SCAN - 1))
  local uri = vim.uri_from_bufnr(buf)
  local state = {
    found = {}, -- name -> list of found entries
    outstanding = {}, -- { client, id } still waited for
    waiting = 0,
    asked = 0, -- definition requests sent
    bytes = 0, -- of loaded buffers' lines sent
    over = false,
  }
  local root, buffers, timer

  local function finish()
    if state.over then
      return
    end
    state.over = true
    if timer then
      timer:stop()
      timer:close()
    end
    local late = 0
    for key, r in pairs(state.outstanding) do
      state.outstanding[key] = nil
      late = late + 1
      pcall(r[1].cancel_request, r[1], r[2])
    end
    local out = {}
    for _, name in ipairs(used) do
      for _, f in ipairs(state.found[name[1]] or {}) do
        if #out < M.MAX_FOUND then
          out[#out + 1] = f
        end
      end
    end
    done({
      found = out,
      path = api.nvim_buf_is_valid(buf) and api.nvim_buf_get_name(buf) or '',
      first = range[1] + 1,
      last = range[3] + 1,
      asked = state.asked,
      late = late,
    })
  end

  local function answered(client, id)
    state.outstanding[client.id .. ':' .. id] = nil
    state.waiting = state.waiting - 1
    if state.waiting == 0 then
      finish()
    end
  end

  local function send(client, method, params, handler)
    local id
    local ok, sent, rid = pcall(client.request, client, method, params, function(err, result)
      if state.over then
        return
      end
      pcall(handler, err, result)
      answered(client, id)
    end, buf)
    if ok and sent and rid then
      id = rid
      state.outstanding[client.id .. ':' .. id] = { client, id }
      state.waiting = state.waiting + 1
      state.asked = state.asked + 1
    end
  end

  local function on_definition(client, use, result)
    if type(result) ~= 'table' then
      return
    end
    root = root or roots()
    buffers = buffers or loaded_buffers()
    local locs = (result.uri or result.targetUri) and { result } or result
    local kept = state.found[use[1]] or {}
    local before = #kept
    for i = 1, math.min(#locs, M.MAX_SEEN) do
      if #kept - before >= M.PER_ANSWER then
        break
      end
      local at = location(locs[i], root)
      if at then
        local f = { name = use[1], path = at.path, line = at.row + 1 }
        local b = buffers[at.path]
        if b and api.nvim_buf_is_loaded(b) and state.bytes < M.MAX_SENT_BYTES then
          -- the buffer is the truth, saved or not
          local from = math.max(0, at.row - M.LEAD)
          local text = api.nvim_buf_get_lines(b, from, at.row + M.MAX_LINES, false)
          for j, l in ipairs(text) do
            if #l > M.MAX_LINE_BYTES then -- cut on a character's start
              text[j] = l:sub(1, M.MAX_LINE_BYTES + vim.str_utf_start(l, M.MAX_LINE_BYTES + 1))
            end
            state.bytes = state.bytes + #text[j]
          end
          local line = text[at.row - from + 1]
          local byte = line and vim.str_byteindex(line, client.offset_encoding, at.character, false)
            or 0
          -- a position in the line's indentation is taken as the line's first character
          byte = math.max(byte, line and #line:match('^%s*') or 0)
          local srow, erow = ts_rows(b, at.row, byte)
          f.lines, f.start = text, from + 1
          f['end'] = erow and erow + 1 or nil
          f.top = srow and srow < at.row and srow + 1 or nil -- `static int` above `f(void)`
        end
        kept[#kept + 1] = f
      end
    end
    state.found[use[1]] = kept
  end

  for _, client in ipairs(clients) do
    for _, use in ipairs(used) do
      local pos = position(use[2], use[3], use[4], client.offset_encoding)
      send(
        client,
        DEFINITION,
        { textDocument = { uri = uri }, position = pos },
        function(err, result)
          if not err then
            on_definition(client, use, result)
          end
        end
      )
    end
  end
  if state.waiting == 0 then
    return done(nil)
  end
  -- kznllm.context's stop ends it when the fill goes out (its deadline, or the query
  -- typed later); this bounds a prompt left open
  timer = vim.uv.new_timer()
  timer:start(M.PATIENCE_MS, 0, vim.schedule_wrap(finish))
  return finish
end

return M
