-- The git source: the host runs git (kznllm_py/prompt/sources/git.py) for the buffer's
-- file at the keypress, while the query is typed, and answers through
-- kznllm.context.answered('git', reply). A buffer with unsaved edits sends its text, so
-- that the hunks are of what the user sees and their rows are the selection's; an
-- unmodified one does not (the file as saved is the same). Not for a buffer that is no
-- file, or whose text could not be the file's bytes (another 'fileencoding').
local M = {}

local MAX_BYTES = 1024 * 1024 -- kznllm_py/prompt/sources/git.py MAX_BYTES

local pending, next_id = {}, 0

local function unsaved(buf)
  local bo = vim.bo[buf]
  local count = vim.api.nvim_buf_line_count(buf)
  if not bo.modified or vim.api.nvim_buf_get_offset(buf, count) > MAX_BYTES then
    return vim.NIL -- the host says a file over its cap is too large when it looks
  end
  local eol = bo.fileformat == 'dos' and '\r\n' or (bo.fileformat == 'mac' and '\r' or '\n')
  local text = table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), eol)
  if bo.eol or bo.fixeol then
    text = text .. eol
  end
  return (bo.bomb and '\239\187\191' or '') .. text
end

function M.collect(buf, range, _, done)
  local path = vim.api.nvim_buf_get_name(buf)
  local enc = vim.bo[buf].fileencoding
  if path == '' or vim.bo[buf].buftype ~= '' or (enc ~= '' and enc ~= 'utf-8') then
    return done(nil)
  end
  next_id = next_id + 1
  pending[next_id] = done
  pending[next_id - 50] = nil -- one the host never answered (its deadline long past)
  local last = (range[4] == 0 and range[3] > range[1]) and range[3] or range[3] + 1
  require('kznllm.host').notify('git_hunks', {
    request = next_id,
    path = path,
    rows = { range[1] + 1, last },
    text = unsaved(buf),
  })
end

--- The host's answer: { request, hunks, base, note } (typed again by the host at the fill).
function M.answered(reply)
  local done = type(reply) == 'table' and pending[reply.request]
  if done then
    pending[reply.request] = nil
    done(reply)
  end
end

return M
