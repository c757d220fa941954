-- The git source: the buffer's text diffed with Neovim's own vim.diff against the file's
-- committed text, which the host reads from the repository's long-lived cat-file
-- (kznllm_py/prompt/sources/git.py, op `git_blob`). The editor keeps, per buffer, the
-- last committed text it got and its oid: at the keypress it asks the host whether the
-- oid changed and diffs at once with what it holds; the host answers with the text only
-- when it did. The unified diff goes with the fill; the host picks the hunks near the
-- selection (git.parse). The buffer's text is what a :write would put in the file
-- ('fileformat', 'bomb', 'eol'), so the hunks are of what the user sees and their rows
-- are the selection's. Not for a buffer that is no file, whose text could not be the
-- file's bytes (another 'fileencoding'), or over MAX_BYTES (a note says so).
local M = {}

local MAX_BYTES = 1024 * 1024 -- kznllm_py/prompt/sources/git.py MAX_BYTES
local DIFF = { result_type = 'unified', ctxlen = 3, indent_heuristic = true } -- git's -U3

local pending, next_id = {}, 0
local held = {} -- buf -> { path, oid, base, text }: the committed text last received

--- The buffer's text as :write would write it.
local function text_of(buf)
  local bo = vim.bo[buf]
  local eol = bo.fileformat == 'dos' and '\r\n' or (bo.fileformat == 'mac' and '\r' or '\n')
  local text = table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), eol)
  if bo.eol or (bo.fixeol and not bo.binary) then
    text = text .. eol
  end
  return (bo.bomb and not bo.binary and '\239\187\191' or '') .. text
end

local function keep(buf, entry)
  if not held[buf] then
    vim.api.nvim_create_autocmd('BufWipeout', {
      buffer = buf,
      once = true,
      callback = function()
        held[buf] = nil
      end,
    })
  end
  held[buf] = entry
end

--- The fill's git facts: the diff (capped: the host drops a cut last hunk), the rows.
local function facts(p, against, diff, note)
  local cut = #diff > MAX_BYTES
  return {
    diff = cut and diff:sub(1, MAX_BYTES) or diff,
    cut = cut,
    first = p.first,
    last = p.last,
    base = against.base,
    note = note,
  }
end

function M.collect(buf, range, _, done)
  local path = vim.api.nvim_buf_get_name(buf)
  local enc = vim.bo[buf].fileencoding
  if path == '' or vim.bo[buf].buftype ~= '' or (enc ~= '' and enc ~= 'utf-8') then
    return done(nil)
  end
  local last = (range[4] == 0 and range[3] > range[1]) and range[3] or range[3] + 1
  local size = vim.api.nvim_buf_get_offset(buf, vim.api.nvim_buf_line_count(buf))
  if size > MAX_BYTES then -- not diffed: Neovim's loop is not held for it
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
  p.text = text_of(buf)
  if mine then
    p.against, p.diff = mine, vim.diff(mine.text, p.text, DIFF)
  end
end

--- The host's answer: { request, oid, base, note, text? } (text: only when the oid is
--- not the one held).
function M.answered(reply)
  local p = type(reply) == 'table' and pending[reply.request]
  if not p then
    return
  end
  pending[reply.request] = nil
  local note = type(reply.note) == 'string' and reply.note or ''
  if type(reply.oid) ~= 'string' or reply.oid == '' then
    return p.done(note ~= '' and { note = note } or nil) -- no repository, not tracked
  end
  local mine = held[p.buf]
  if type(reply.text) == 'string' then
    mine = { path = p.path, oid = reply.oid, base = reply.base, text = reply.text }
    keep(p.buf, mine)
  elseif not (mine and mine.oid == reply.oid and mine.path == p.path) then
    return p.done(nil) -- the text held was dropped meanwhile (a wiped buffer)
  end
  local diff = p.against == mine and p.diff or vim.diff(mine.text, p.text, DIFF)
  p.done(facts(p, mine, diff, note))
end

return M
