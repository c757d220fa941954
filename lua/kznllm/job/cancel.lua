-- The cancel key (<Esc>): mapped in a buffer while a job runs there, then it does what
-- the user's own mapping of the key does.
-- <Esc> cancels while a job runs in the buffer, then does what the user's own <Esc> does.
-- It ends only what the user meant: in Normal mode with the cursor on or next to the
-- answer (or the region it will replace; anywhere in a scratch buffer the answer fills),
-- and never the <Esc> that comes within 'timeoutlen' of leaving Insert or Replace mode
-- (a habitual second <Esc>). :KznCancel always cancels.
local M = {}

local api = vim.api
local config = require('kznllm.config')

local function jobs()
  return require('kznllm.job').jobs
end

local function cancel_key()
  local km = config.options.keymaps
  return km and km.cancel or nil
end

--- How many jobs run in `buf` (not over yet).
function M.running_in(buf)
  local n = 0
  for _, job in pairs(jobs()) do
    if job.buf == buf and job.state ~= 'done' then
      n = n + 1
    end
  end
  return n
end

-- the user's own mapping of the key, as maparg() gives it (buffer-local first)
local function run_mapping(m)
  local function feed(keys)
    api.nvim_feedkeys(
      api.nvim_replace_termcodes(keys, true, true, true),
      m.noremap == 1 and 'ni' or 'mi', -- first in the typeahead: as if the key ran it
      false
    )
  end
  if m.callback then
    local ok, keys = pcall(m.callback)
    if m.expr == 1 and ok and type(keys) == 'string' then
      feed(keys)
    end
  elseif m.rhs and m.rhs ~= '' then
    if m.expr == 1 then
      local ok, keys = pcall(api.nvim_eval, m.rhs)
      if ok and type(keys) == 'string' then
        feed(keys)
      end
    else
      feed(m.rhs)
    end
  end
end

--- Map the key in `buf` for a job that starts there (once for all of them).
function M.map(buf)
  local key = cancel_key()
  if not key or M.running_in(buf) > 1 then
    return
  end
  local prev = api.nvim_buf_call(buf, function()
    return vim.fn.maparg(key, 'n', false, true)
  end)
  local user = prev and not vim.tbl_isempty(prev) and prev or nil
  if user and user.buffer == 1 then
    vim.b[buf].kznllm_saved_map = user
  end
  vim.keymap.set('n', key, function()
    M.at_cursor(buf)
    if user then
      run_mapping(user)
    end
  end, { buffer = buf, desc = 'kznllm: cancel the running request', nowait = true })
end

--- Give the key back in `buf` once no job runs there.
function M.unmap(buf)
  local key = cancel_key()
  if not key or not api.nvim_buf_is_valid(buf) or M.running_in(buf) > 0 then
    return
  end
  pcall(vim.keymap.del, 'n', key, { buffer = buf })
  local saved = vim.b[buf].kznllm_saved_map
  if saved then
    api.nvim_buf_call(buf, function()
      vim.fn.mapset('n', false, saved)
    end)
    vim.b[buf].kznllm_saved_map = nil
  end
end

local left_insert = 0 -- vim.uv.hrtime() when Insert or Replace mode was last left

api.nvim_create_autocmd('ModeChanged', {
  group = api.nvim_create_augroup('kznllm_cancel_key', { clear = true }),
  pattern = '*:n*',
  callback = function()
    if (vim.v.event.old_mode or ''):match('^[iR]') then
      left_insert = vim.uv.hrtime()
    end
  end,
})

--- The cancel key in `buf` (the current buffer): the jobs there whose answer or region
--- is on or next to the cursor's line, unless the key just followed leaving Insert mode.
function M.at_cursor(buf)
  if (vim.uv.hrtime() - left_insert) / 1e6 < vim.o.timeoutlen then
    return 0
  end
  local job_ = require('kznllm.job')
  local row = api.nvim_win_get_cursor(0)[1] - 1
  local n = 0
  for id, job in pairs(job_.jobs) do
    if job.buf == buf and job.state ~= 'done' then
      local b = not job.follow and job_.answer_bounds(job)
      if job.follow or (b and row >= b[1] - 1 and row <= b[3] + 1) then
        job_.stop(id, 'cancelled', nil)
        n = n + 1
      end
    end
  end
  return n
end

return M
