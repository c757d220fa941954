-- For the git section (the host runs git: kznllm_py/prompt/sources/git.py): a buffer
-- with unsaved edits sends its text, so that the hunks are of what the user sees and
-- their rows are the selection's; an unmodified one sends nothing (the file as saved is
-- the same). Nothing either when the text could not be the file's bytes (another
-- 'fileencoding') or is over the host's cap. Sync.
local M = {}

local MAX_BYTES = 1024 * 1024 -- kznllm_py/prompt/sources/git.py MAX_BYTES

function M.collect(buf, _, _, done)
  local bo = vim.bo[buf]
  local enc = bo.fileencoding
  if not bo.modified or (enc ~= '' and enc ~= 'utf-8') or bo.buftype ~= '' then
    return done(nil)
  end
  local count = vim.api.nvim_buf_line_count(buf)
  if vim.api.nvim_buf_get_offset(buf, count) > MAX_BYTES then
    return done(nil) -- the host says the file is too large when it looks at it
  end
  local eol = bo.fileformat == 'dos' and '\r\n' or (bo.fileformat == 'mac' and '\r' or '\n')
  local text = table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), eol)
  if bo.eol or bo.fixeol then
    text = text .. eol
  end
  done({ text = (bo.bomb and '\239\187\191' or '') .. text })
end

return M
