-- A job's progress: fidget.nvim when installed, else virtual text by the extmark.
-- setup({ progress = true | false | { message = function(info) return string end } }):
-- the message function words both; info is progress_info()'s table.
local M = {}

local api = vim.api
local ns = api.nvim_create_namespace('kznllm')
local config = require('kznllm.config')
local notify = require('kznllm.notify').notify

-- from the job's life: where progress shows, and the preset the job runs with
M.hooks = {
  anchor = function(_)
    return nil
  end,
  resolve = function(_) end,
}

local function progress_opts()
  local p = config.options.progress
  if not p then
    return nil
  end
  return type(p) == 'table' and p or {}
end

--- The default progress message: the label, the elapsed seconds, and a retry's wait.
function M.default_message(info)
  local s = ('%s %.1fs'):format(info.label, info.elapsed)
  if info.status == 'retrying' then
    s = s .. ' · ' .. info.note
  elseif info.status ~= 'waiting' and info.status ~= 'streaming' then
    s = s .. ' · ' .. info.status
  end
  return s
end

--- What a message function is given. status: 'waiting' (no text yet), 'retrying' (note
--- says why), 'streaming', then at the end 'ok' | 'error' | 'cancelled' (with usage when
--- the provider reported it).
local function progress_info(job, status, usage)
  M.hooks.resolve(job)
  if not status then
    status = job.head and 'streaming' or (job.note and 'retrying' or 'waiting')
  end
  return {
    id = job.id,
    bufnr = job.buf,
    label = job.label,
    preset = job.preset,
    model = job.model,
    elapsed = (vim.uv.hrtime() - job.started) / 1e9,
    chars = job.chars,
    tokens = job.tokens, -- the host's estimate of the answer's tokens so far
    status = status,
    note = job.note,
    usage = usage,
  }
end

local function progress_text(job, status, usage)
  local info = progress_info(job, status, usage)
  local fn = (progress_opts() or {}).message
  if type(fn) == 'function' then
    local ok, s = pcall(fn, info)
    if ok and type(s) == 'string' then
      return s
    end
    if ok and s ~= nil then
      s = 'returned a ' .. type(s) .. ', not a string'
    end
    if s ~= nil and not job.message_failed then
      job.message_failed = true -- once per job, then the default message
      notify('kznllm: progress.message: ' .. tostring(s), vim.log.levels.WARN)
    end
  end
  return M.default_message(info)
end

--- Redraw the progress of `job` (`timer`: from its own tick, skipped while text lands).
function M.update(job, tick, timer)
  if job.state == 'done' then
    return
  end
  local now = vim.uv.hrtime()
  if timer and job.wrote_at and now - job.wrote_at < 3e8 and now - (job.shown_at or 0) < 5e8 then
    -- text is landing: that is the progress; a spinner redraw now would cost a heavy
    -- buffer (treesitter) a second redraw for nothing (but twice a second it moves, at
    -- any token rate: a slow stream lands text every tick)
    return
  end
  job.shown_at = now
  local text = progress_text(job)
  if job.fidget then
    if text ~= job.reported then
      job.reported = text
      pcall(function()
        job.fidget:report({ message = text })
      end)
    end
    return
  end
  if not job.indicator or not api.nvim_buf_is_valid(job.buf) then
    return
  end
  local ok, row, col = pcall(M.hooks.anchor, job)
  if not ok or not row then
    return
  end
  job.tick = tick or job.tick or 0
  pcall(api.nvim_buf_set_extmark, job.buf, ns, row, col, {
    id = job.indicator,
    virt_text = {
      { (' %s %s'):format(require('kznllm.notify').spinner(job.tick), text), 'KznllmProgress' },
    },
    virt_text_pos = 'eol',
    right_gravity = true,
  })
end

--- Show progress for a job that starts.
function M.start(job)
  if not progress_opts() then
    return
  end
  local ok, fidget = pcall(require, 'fidget.progress')
  if ok and type(fidget) == 'table' and fidget.handle then
    job.reported = progress_text(job)
    local ok2, handle = pcall(fidget.handle.create, {
      title = 'kznllm',
      message = job.reported,
      lsp_client = { name = 'kznllm' },
    })
    job.fidget = ok2 and handle or nil
  end
  if not job.fidget then
    local r, c = M.hooks.anchor(job)
    job.indicator = api.nvim_buf_set_extmark(job.buf, ns, r or 0, c or 0, {})
    M.update(job, 0)
  end
  job.timer = vim.uv.new_timer()
  local tick = 0
  job.timer:start(
    100,
    100,
    vim.schedule_wrap(function()
      tick = tick + 1
      M.update(job, tick, true)
    end)
  )
end

--- The job ended (`status`, `usage`): the indicator goes, fidget says how it ended.
function M.stop(job, status, usage)
  if job.timer then
    job.timer:stop()
    job.timer:close()
    job.timer = nil
  end
  if job.indicator and api.nvim_buf_is_valid(job.buf) then
    pcall(api.nvim_buf_del_extmark, job.buf, ns, job.indicator)
  end
  job.indicator = nil
  if job.fidget then
    local text = progress_text(job, status, usage)
    pcall(function()
      job.fidget.message = text
      job.fidget:finish()
    end)
    job.fidget = nil
  end
end

return M
