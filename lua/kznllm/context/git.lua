-- The git source: the buffer's text diffed with Neovim's own vim.diff against the file's
-- committed text, which the host reads from the repository's long-lived cat-file
-- (kznllm_py/prompt/sources/git.py, op `git_blob`). The editor keeps, per buffer, the
-- last committed text it got and its oid: at the keypress it asks the host whether the
-- oid changed and diffs at once with what it holds; the host answers with the text only
-- when it did. Only the lines from the first that differs to the last that differs (and
-- their context) go through vim.diff: the lines alike before and after are found by
-- comparing the lines (interned strings). The unified diff goes with the fill; the host
-- picks the hunks near the selection (git.parse). The buffer's text is what a :write
-- would put in the file ('fileformat', 'bomb', 'eol'), so the hunks are of what the user
-- sees and their rows are the selection's. Not for a buffer that is no file, whose text
-- could not be the file's bytes (another 'fileencoding'), or over MAX_BYTES (a note says
-- so: Neovim's loop is not held for it).
-- With a committed text held, the fill does not wait for the host's answer: it goes with
-- the diff against the held text and its oid (`check`: this ask's id); the host holds the
-- fill until its answer to this ask says whether that oid is still the file's, and when
-- it is not, until the editor's diff against the new text comes (`git_diff`). That diff
-- is made once per change of the buffer (its changedtick and what :write depends on) or
-- of the text held, and again REFRESH_MS after the last change, so that a fill after a
-- pause in the editing finds it made (reading 16,000 lines is ~1-2 ms of Neovim's loop).
local M = {}

local MAX_BYTES = 1024 * 1024 -- kznllm_py/prompt/sources/git.py MAX_BYTES
local CONTEXT = 3 -- git's -U3
local DIFF = { result_type = 'unified', ctxlen = CONTEXT, indent_heuristic = true }

local pending, next_id = {}, 0
local held = {} -- buf -> { path, oid, base, pieces, eol }: the committed text last received
-- buf -> { key, against, pieces, eol, diff, offset }: the buffer's text (`key`: its
-- changedtick and the options :write follows) diffed against the text held (`against`)
local made = {}
local REFRESH_MS = 300 -- after the last change: the diff is made again, in the background

-- `text` cut at each `eol`: table.concat(pieces, eol) is `text` again
local split = require('kznllm.text').split
local later = require('kznllm.later')
local per_buffer = require('kznllm.per_buffer')

--- The buffer's text as :write would write it, as pieces between line breaks, and the
--- line break.
local function pieces_of(buf)
  local bo = vim.bo[buf]
  local eol = bo.fileformat == 'dos' and '\r\n' or (bo.fileformat == 'mac' and '\r' or '\n')
  local pieces = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  if bo.bomb and not bo.binary then
    pieces[1] = '\239\187\191' .. pieces[1]
  end
  if bo.eol or (bo.fixeol and not bo.binary) then
    pieces[#pieces + 1] = '' -- the text ends with a line break
  end
  return pieces, eol
end

--- The committed text's pieces for the line break `eol`.
local function committed(entry, eol)
  if entry.eol ~= eol then
    entry.pieces, entry.eol = split(table.concat(entry.pieces, entry.eol), eol), eol
  end
  return entry.pieces
end

--- The unified diff of the committed text (`old`) and the buffer's (`new`), both as
--- pieces, and the lines it starts after: the lines both begin and end with alike (a
--- comparison of interned strings) are left out of vim.diff, but for the context.
local function diff(old, new, eol)
  local no, nn = #old, #new
  local first = 0
  while first < no and first < nn and old[first + 1] == new[first + 1] do
    first = first + 1
  end
  if first == no and first == nn then
    return '', 0
  end
  local last = 0
  while last < no - first and last < nn - first and old[no - last] == new[nn - last] do
    last = last + 1
  end
  local lo = math.max(1, first + 1 - CONTEXT)
  local function text(pieces, n)
    local hi = math.min(n, n - last + CONTEXT)
    return table.concat(pieces, eol, lo, hi) .. (hi < n and eol or '')
  end
  return vim.diff(text(old, no), text(new, nn), DIFF), lo - 1
end

--- What the fill is sent of `p`'s diff (against the committed text `mine`).
local function fact_of(p, mine, note)
  -- capped: the host drops a cut last hunk; it picks the hunks near the rows
  local cut = #p.diff > MAX_BYTES
  return {
    diff = cut and p.diff:sub(1, MAX_BYTES) or p.diff,
    cut = cut,
    offset = p.offset, -- the lines before the diff's first (vim.diff saw only the rest)
    first = p.first,
    last = p.last,
    base = mine.base,
    note = note,
  }
end

--- What the buffer's text as :write writes it depends on: the text, and the options
--- pieces_of reads (none of which moves the changedtick).
local function text_key(buf)
  local bo = vim.bo[buf]
  local opts = { bo.fileformat, bo.bomb, bo.eol, bo.fixeol, bo.binary }
  for i = 2, 5 do
    opts[i] = opts[i] and 'y' or 'n'
  end
  return vim.api.nvim_buf_get_changedtick(buf) .. table.concat(opts, ' ')
end

--- The buffer's text and its diff against the committed text `mine`: the one made
--- before while neither changed.
local function diffed(buf, mine)
  local key, c = text_key(buf), made[buf]
  if c and c.key == key and c.against == mine then
    return c
  end
  local pieces, eol = pieces_of(buf)
  c = { key = key, against = mine, pieces = pieces, eol = eol }
  c.diff, c.offset = diff(committed(mine, eol), pieces, eol)
  made[buf] = c
  return c
end

local function too_big(buf)
  return vim.api.nvim_buf_get_offset(buf, vim.api.nvim_buf_line_count(buf)) > MAX_BYTES
end

--- The diff of `buf` made again REFRESH_MS after its last change (restarted by each).
local refresh_later = later.debounced(REFRESH_MS, function(buf)
  local mine = held[buf]
  if mine and vim.api.nvim_buf_is_valid(buf) and not too_big(buf) then
    if mine.path == vim.api.nvim_buf_get_name(buf) then
      pcall(diffed, buf, mine)
    end
  end
end)

local function keep(buf, entry)
  if not held[buf] then
    per_buffer.forget_on_wipeout(buf, held, made)
    vim.api.nvim_create_autocmd({ 'TextChanged', 'TextChangedI' }, {
      buffer = buf,
      callback = function()
        if not held[buf] then
          return true -- wiped and its number taken again: not ours to watch
        end
        refresh_later(buf)
      end,
    })
  end
  held[buf] = entry
end

function M.collect(buf, range, _, done)
  local path = vim.api.nvim_buf_get_name(buf)
  local enc = vim.bo[buf].fileencoding
  if path == '' or vim.bo[buf].buftype ~= '' or (enc ~= '' and enc ~= 'utf-8') then
    return done(nil)
  end
  local last = (range[4] == 0 and range[3] > range[1]) and range[3] or range[3] + 1
  if too_big(buf) then -- not diffed: Neovim's loop is not held for it
    return done({
      note = ('git: the buffer is larger than %d KiB (not diffed)'):format(MAX_BYTES / 1024),
    })
  end
  next_id = next_id + 1
  local mine = held[buf]
  if mine and mine.path ~= path then
    mine = nil -- the buffer was renamed: its committed text is another file's
  end
  local p = { done = done, buf = buf, path = path, first = range[1] + 1, last = last }
  pending[next_id] = p
  pending[next_id - 50] = nil -- one the host never answered (its deadline long past)
  require('kznllm.host').notify('git_blob', {
    request = next_id,
    path = path,
    oid = mine and mine.oid or vim.NIL,
  })
  -- while the host looks: the text now, and its diff against what is held
  if not mine then
    p.pieces, p.eol = pieces_of(buf)
  else
    local c = diffed(buf, mine)
    p.pieces, p.eol, p.against, p.diff, p.offset = c.pieces, c.eol, mine, c.diff, c.offset
    -- at once: the host checks the oid (its answer to this ask) before it uses the diff
    p.early = next_id
    local fact = fact_of(p, mine, '')
    fact.check, fact.oid = next_id, mine.oid
    done(fact)
  end
end

--- What the fill gets from the host's answer `reply` to `p`'s ask: the diff against
--- the committed text it names, a note, or nil.
local function from_reply(p, reply)
  local note = type(reply.note) == 'string' and reply.note or ''
  if type(reply.oid) ~= 'string' or reply.oid == '' then
    return note ~= '' and { note = note } or nil -- no repository, not tracked
  end
  local mine = held[p.buf]
  if type(reply.text) == 'string' then
    mine = { path = p.path, oid = reply.oid, base = reply.base }
    mine.pieces, mine.eol = split(reply.text, p.eol), p.eol
    keep(p.buf, mine)
  elseif not (mine and mine.oid == reply.oid and mine.path == p.path) then
    return nil -- the text held was dropped meanwhile (a wiped buffer)
  end
  if p.against ~= mine then
    p.diff, p.offset = diff(committed(mine, p.eol), p.pieces, p.eol)
  end
  return fact_of(p, mine, note)
end

--- The host's answer: { request, oid, base, note, text? } (text: only when the oid is
--- not the one held).
function M.answered(reply)
  local p = type(reply) == 'table' and pending[reply.request]
  if not p then
    return
  end
  pending[reply.request] = nil
  if not p.early then
    return p.done(from_reply(p, reply))
  end
  if reply.oid ~= p.against.oid then
    -- the fill went with a diff against a text that is no longer the file's committed
    -- one: the host waits for this one (of the text at the keypress)
    require('kznllm.host').notify('git_diff', { request = p.early, git = from_reply(p, reply) })
  end
end

return M
