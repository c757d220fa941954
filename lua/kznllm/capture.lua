-- What the editor knows when a key is pressed: the selection (or the insertion point)
-- captured as extmarks in the same tick, and the buffer's text around it that goes to the
-- host as context. No host, no options but `context_lines`.
local M = {}

local api = vim.api
local config = require('kznllm.config')
local job = require('kznllm.job')

M.line_len = job.line_len -- from buffer offsets: a long line is not read for it

--- How far the multibyte character whose first byte is byte `b` (1-based) of line
--- `row` (`len` bytes long) goes on (vim.str_utf_end), reading those bytes only.
local function utf_end(buf, row, b, len)
  if b < 1 or b > len then
    return 0
  end
  local bytes = api.nvim_buf_get_text(buf, row, b - 1, row, math.min(b + 3, len), {})[1] or ''
  return #bytes > 0 and vim.str_utf_end(bytes, 1) or 0
end

--- The range to replace for visual `mode` between positions `a` and `b` (getpos()).
--- Returns { srow, scol, erow, ecol } 0-based end-exclusive, and for blockwise a list of
--- per-line { row, scol, ecol }. The end of line is not part of a charwise selection.
function M.region(buf, mode, a, b)
  if mode == 'V' then
    local s, e = math.min(a[2], b[2]) - 1, math.max(a[2], b[2]) - 1
    return { s, 0, e, M.line_len(buf, e) }, nil
  end
  local regions
  if vim.fn.exists('*getregionpos') == 1 then
    regions = vim.fn.getregionpos(a, b, { type = mode, eol = false })
  else -- Neovim 0.10: rows between the two positions, same byte columns for a block
    if a[2] > b[2] or (a[2] == b[2] and a[3] > b[3]) then
      a, b = b, a
    end
    regions = {}
    for lnum = a[2], b[2] do
      local s = (mode == 'v' and lnum > a[2]) and 1 or math.min(a[3], b[3])
      local e = (mode == 'v' and lnum < b[2]) and M.line_len(buf, lnum - 1)
        or (mode == 'v' and b[3] or math.max(a[3], b[3]))
      if mode == 'v' and lnum == a[2] then
        s = a[3]
      end
      table.insert(regions, { { 0, lnum, s, 0 }, { 0, lnum, e, 0 } })
    end
  end
  local rows = {}
  for _, r in ipairs(regions) do
    local row = r[1][2] - 1
    local len = M.line_len(buf, row)
    local s = math.min(r[1][3] - 1, len)
    local e = r[2][3] -- 1-based inclusive byte of the last char's first byte
    if e >= 1 and e <= len then
      e = e + utf_end(buf, row, e, len) -- through the last byte of a multibyte char
    end
    e = math.min(math.max(e, s), len)
    table.insert(rows, { row, s, e })
  end
  local first, last = rows[1], rows[#rows]
  if mode == 'v' then
    return { first[1], first[2], last[1], last[3] }, nil
  end
  return { first[1], first[2], last[1], last[3] }, rows
end

--- Yap writes after the character under the cursor (like `a`), whole even if multibyte.
function M.after_cursor(buf)
  local row, col = unpack(api.nvim_win_get_cursor(0))
  row = math.max(row, 1) -- 0 in a startup `-c` command, before the buffer is shown
  local len = M.line_len(buf, row - 1) or 0
  if len > 0 then
    col = math.min(col + 1 + utf_end(buf, row - 1, col + 1, len), len)
  end
  return { row - 1, col, row - 1, col }
end

-- the host keeps prompts.CONTEXT_CAP characters each side of the selection or cursor:
-- no more cross the RPC; each is at most 4 bytes, so this many bytes are read to find them
local CONTEXT_CHARS = 24000
local CONTEXT_BYTES = 4 * CONTEXT_CHARS
M.CONTEXT_BYTES = CONTEXT_BYTES

--- The last row in [lo, hi] whose start is at or before byte offset `target`.
local function row_at(buf, lo, hi, target)
  while lo < hi do
    local mid = math.floor((lo + hi + 1) / 2)
    if api.nvim_buf_get_offset(buf, mid) <= target then
      lo = mid
    else
      hi = mid - 1
    end
  end
  return lo
end

--- The position `cap` bytes before (row, col), not before (from, 0), at a character's
--- start (buffer offsets: no text is read to find it).
local function back_by(buf, from, row, col, cap)
  local target = api.nvim_buf_get_offset(buf, row) + col - cap
  if target <= api.nvim_buf_get_offset(buf, from) then
    return from, 0
  end
  local lo = row_at(buf, from, row, target)
  local c = target - api.nvim_buf_get_offset(buf, lo)
  local line = M.line_len(buf, lo)
  if c >= line then
    return lo + 1, 0
  end
  local text = api.nvim_buf_get_text(buf, lo, c, lo, math.min(line, c + 4), {})[1] or ''
  local skip = 0 -- continuation bytes of a character that starts before target
  while skip < #text and text:byte(skip + 1) >= 0x80 and text:byte(skip + 1) < 0xC0 do
    skip = skip + 1
  end
  return lo, c + skip
end

--- The position `cap` bytes after (row, col), not past (to, end of line), at a
--- character's start.
local function ahead_by(buf, to, row, col, cap)
  local last = M.line_len(buf, to)
  local target = api.nvim_buf_get_offset(buf, row) + col + cap
  if target >= api.nvim_buf_get_offset(buf, to) + last then
    return to, last
  end
  local lo = row_at(buf, row, to, target)
  local c = math.min(target - api.nvim_buf_get_offset(buf, lo), M.line_len(buf, lo))
  local text = api.nvim_buf_get_text(buf, lo, math.max(0, c - 3), lo, c, {})[1] or ''
  -- back to the start of a character the cut would split
  local i = #text
  while i > 0 and text:byte(i) >= 0x80 and text:byte(i) < 0xC0 do
    i = i - 1
  end
  if i > 0 and text:byte(i) >= 0xC0 then
    local need = text:byte(i) >= 0xF0 and 4 or text:byte(i) >= 0xE0 and 3 or 2
    if #text - i + 1 < need then
      c = c - (#text - i + 1)
    end
  end
  return lo, c
end

--- The text before and after `range` that goes to the host (its caps, exactly).
function M.context(buf, range)
  local n = config.options.context_lines
  local from = math.max(0, range[1] - n)
  local last = api.nvim_buf_line_count(buf) - 1
  local to = math.min(last, range[3] + n)
  local br, bc = back_by(buf, from, range[1], range[2], CONTEXT_BYTES)
  local ar, ac = ahead_by(buf, to, range[3], range[4], CONTEXT_BYTES)
  local before = table.concat(api.nvim_buf_get_text(buf, br, bc, range[1], range[2], {}), '\n')
  local after = table.concat(api.nvim_buf_get_text(buf, range[3], range[4], ar, ac, {}), '\n')
  -- then exactly the characters the host keeps (C-speed counting, no Lua loop)
  local n = vim.str_utfindex(before, 'utf-32')
  if n > CONTEXT_CHARS then
    before = before:sub(vim.str_byteindex(before, 'utf-32', n - CONTEXT_CHARS) + 1)
  end
  if vim.str_utfindex(after, 'utf-32') > CONTEXT_CHARS then
    after = after:sub(1, vim.str_byteindex(after, 'utf-32', CONTEXT_CHARS))
  end
  return before, after
end

--- Capture the region `spec` writes to (a selection, or the insertion point), now.
function M.capture(buf, spec)
  if spec.replace then
    if spec.block then
      return job.capture(buf, { kind = 'block', rows = spec.block })
    end
    return job.capture(buf, { kind = 'range', range = spec.range, linewise = spec.linewise })
  end
  local p = spec.range or M.after_cursor(buf)
  return job.capture(buf, { kind = 'point', row = p[1], col = p[2], placement = spec.placement })
end

--- The end of `buf`, where a follow-up's answer goes.
function M.buffer_end(buf)
  local last = api.nvim_buf_line_count(buf) - 1
  local len = M.line_len(buf, last)
  return { last, len, last, len }
end

return M
