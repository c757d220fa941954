-- Regions: every position a request uses is an extmark from the keypress on. Shared by
-- the job's life (lua/kznllm/job/init.lua), its writes and the review.
local M = {}

local api = vim.api
local ns = api.nvim_create_namespace('kznllm')
M.ns = ns

--- The position of extmark `id` (of the jobs' namespace, or `space`): row, col (nil
--- when gone).
function M.mark_pos(buf, id, space)
  local p = api.nvim_buf_get_extmark_by_id(buf, space or ns, id, {})
  return p[1], p[2]
end

--- The end of `lines` written at (row, col).
function M.end_of(row, col, lines)
  if #lines == 1 then
    return row, col + #lines[1]
  end
  return row + #lines - 1, #lines[#lines]
end

-- regions: every position a request uses is an extmark from the keypress -------------
--
-- A region is captured in the same tick as the keypress or the command, before the
-- query prompt opens, and every later step resolves it from its extmarks: text typed,
-- streamed or undone elsewhere moves the marks, never where the answer goes.
--   range  one pair of marks (start, end) around the selection; a linewise selection
--          ends at the start of the line after it, so deleting its lines shows,
--          and leaves its blank lines at the top and bottom out (they stay)
--   block  one pair per row of a blockwise selection
--   point  normal mode: the insertion point after the cursor and the start of its line
-- The start mark has right gravity and the end mark left: text inserted at either edge
-- stays outside the selection. The selection's text is kept; if it differs when the
-- request starts or when its first token comes, nothing is replaced.

function M.before_or_at(ar, ac, br, bc)
  return ar < br or (ar == br and ac <= bc)
end

local function line_at(buf, row)
  return api.nvim_buf_get_lines(buf, row, row + 1, false)[1]
end

--- The byte length of line `row`, from buffer offsets: the line itself is not read
--- (a 1 MB line would be copied into Lua for its length). nil past the last line.
function M.line_len(buf, row)
  local count = api.nvim_buf_line_count(buf)
  if row < 0 or row >= count then
    return nil
  end
  local len = api.nvim_buf_get_offset(buf, row + 1) - api.nvim_buf_get_offset(buf, row)
  if row < count - 1 then
    return len - 1
  end
  -- the last line's EOL counts only when it would be written ('eol', or 'fixeol'
  -- without 'binary')
  local bo = vim.bo[buf]
  return (bo.eol or (bo.fixeol and not bo.binary)) and len - 1 or len
end
local line_len = M.line_len

--- Whether line `row` holds only white space (read in full only when it is short, or
--- when its start is all white space).
function M.blank_line(buf, row, len)
  local head = api.nvim_buf_get_text(buf, row, 0, row, math.min(len, 256), {})[1] or ''
  if not head:match('^%s*$') then
    return false
  end
  return len <= 256 or (line_at(buf, row) or ''):match('^%s*$') ~= nil
end

local function mark(buf, row, col, right_gravity)
  return api.nvim_buf_set_extmark(buf, ns, row, col, { right_gravity = right_gravity })
end

--- The spans of a range or block region now ({ srow, scol, erow, ecol } each), or nil
--- when its marks are gone or crossed (the text between them was deleted).
function M.spans(r)
  local out = {}
  for _, pair in ipairs(r.pairs) do
    local a = api.nvim_buf_get_extmark_by_id(r.buf, ns, pair[1], {})
    local b = api.nvim_buf_get_extmark_by_id(r.buf, ns, pair[2], {})
    if not a[1] or not b[1] or not M.before_or_at(a[1], a[2], b[1], b[2]) then
      return nil
    end
    table.insert(out, { a[1], a[2], b[1], b[2] })
  end
  return out
end

local function span_text(buf, s)
  return table.concat(api.nvim_buf_get_text(buf, s[1], s[2], s[3], s[4], {}), '\n')
end

--- The region's text now (a block's rows joined by newlines; a linewise range with the
--- line break after it), or nil when it is gone.
function M.region_text(r)
  if r.kind == 'point' or not api.nvim_buf_is_valid(r.buf) then
    return nil
  end
  local s = M.spans(r)
  if not s then
    return nil
  end
  local parts = {}
  for _, x in ipairs(s) do
    table.insert(parts, span_text(r.buf, x))
  end
  return table.concat(parts, '\n')
end

--- The text a request sends as its selection (a linewise range without its line break).
function M.selection(r)
  local t = M.region_text(r) or ''
  return r.nl and t:sub(1, -2) or t
end

--- True when the selected text is no longer what it was at the keypress.
function M.region_changed(r)
  return r.kind ~= 'point' and M.region_text(r) ~= r.text
end

--- Lines `sr`..`er` (0-based) without the blank ones at their top and bottom: what a
--- linewise selection replaces (its blank edges stay; the answer comes without its
--- own: kznllm_py/fill/edges.py). All blank: all of them. Neovim's own scan (C).
function M.inner_lines(buf, sr, er)
  local found = api.nvim_buf_call(buf, function()
    return { vim.fn.nextnonblank(sr + 1), vim.fn.prevnonblank(er + 1) }
  end)
  if found[1] == 0 or found[1] > er + 1 then
    return sr, er
  end
  return found[1] - 1, found[2] - 1
end

--- Capture a region now. spec: { kind = 'range', range = { srow, scol, erow, ecol },
--- linewise = bool } | { kind = 'block', rows = { { row, scol, ecol }, ... } } |
--- { kind = 'point', row = r, col = c, placement = p } (0-based, end exclusive).
function M.capture(buf, spec)
  local r = { buf = buf, kind = spec.kind, placement = spec.placement, marks = {} }
  local function add(row, col, gravity)
    local id = mark(buf, row, col, gravity)
    table.insert(r.marks, id)
    return id
  end
  if spec.kind == 'point' then
    r.point = add(spec.row, spec.col, false)
    r.line = add(spec.row, 0, false)
    return r
  end
  r.pairs = {}
  local rows = spec.rows or { spec.range }
  for _, x in ipairs(rows) do
    local sr, sc, er, ec = x[1], x[2], x[3], x[4]
    if spec.kind == 'block' then
      sr, sc, er, ec = x[1], x[2], x[1], x[3]
    elseif spec.linewise then
      sr, er = M.inner_lines(buf, sr, er)
      ec = line_len(buf, er)
    end
    if spec.linewise and er + 1 < api.nvim_buf_line_count(buf) then
      er, ec, r.nl = er + 1, 0, true
    end
    table.insert(r.pairs, { add(sr, sc, true), add(er, ec, false) })
  end
  r.text = M.region_text(r)
  return r
end

--- Forget a region's marks (the prompt was dismissed, or the job took them over).
function M.release(r)
  if r and api.nvim_buf_is_valid(r.buf) then
    for _, id in ipairs(r.marks) do
      pcall(api.nvim_buf_del_extmark, r.buf, ns, id)
    end
  end
end

--- Where a region is now: { srow, scol, erow, ecol }. A point stands for its whole line
--- unless it writes at the cursor (another request there would touch it).
function M.bounds(r, placement)
  if r.kind == 'point' then
    local p = api.nvim_buf_get_extmark_by_id(r.buf, ns, r.point, {})
    if (placement or r.placement) == 'cursor' then
      return { p[1], p[2], p[1], p[2] }
    end
    local row = api.nvim_buf_get_extmark_by_id(r.buf, ns, r.line, {})[1]
    local len = line_len(r.buf, row) or 0
    return { math.min(row, p[1]), 0, math.max(row, p[1]), math.max(len, p[2]) }
  end
  local s = M.spans(r)
  if not s then
    return nil
  end
  local first, last = s[1], s[#s]
  return { first[1], first[2], last[3], last[4] }
end

--- The cursor line of a point region split at its insertion point: { head, rest,
--- blank } (the host moves the prompt's context split to where the answer goes).
--- A part longer than `most` bytes (the context the host gets) cannot be in it: it is
--- left out (nil), which the host reads as "split where it is".
function M.spot(r, most)
  local buf = r.buf
  local p = api.nvim_buf_get_extmark_by_id(buf, ns, r.point, {})
  local len = line_len(buf, p[1]) or 0
  local function part(sc, ec)
    if ec - sc > most then
      return nil
    end
    return api.nvim_buf_get_text(buf, p[1], sc, p[1], ec, {})[1] or ''
  end
  return { head = part(0, p[2]), rest = part(p[2], len), blank = M.blank_line(buf, p[1], len) }
end

--- The text a request is about, as context sees it: the region's bounds, a linewise
--- range's ending before its last line break (the context after it starts with it).
function M.text_bounds(r)
  local b = M.bounds(r, 'cursor')
  if b and r.nl and b[3] > b[1] then
    return { b[1], b[2], b[3] - 1, line_len(r.buf, b[3] - 1) or 0 }
  end
  return b
end

return M
