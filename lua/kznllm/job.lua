-- Jobs in the editor: the extmarks a generation writes at, the atomic write helper
-- (undojoin + set_text, so one generation is one undo step), the progress indicator,
-- <Esc> to cancel, and the end of a job (message, autocmd). The Python host calls
-- write() and finish() as notifications; nothing here waits on the network.
local M = {}

local api = vim.api
local ns = api.nvim_create_namespace('kznllm')
M.ns = ns

---@type table<integer, table>
M.jobs = {}
local next_id = 0
local spinner = { '⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏' }

M.config = { progress = true, cancel_key = '<Esc>' }

local function hl_defaults()
  api.nvim_set_hl(0, 'KznllmPending', { default = true, link = 'Visual' })
  api.nvim_set_hl(0, 'KznllmProgress', { default = true, link = 'Comment' })
  api.nvim_set_hl(0, 'KznllmPartial', { default = true, link = 'DiagnosticWarn' })
end
hl_defaults()

local function notify(msg, level)
  vim.notify(msg, level or vim.log.levels.INFO, { title = 'kznllm' })
end

local function mark_pos(buf, id)
  local p = api.nvim_buf_get_extmark_by_id(buf, ns, id, {})
  return p[1], p[2]
end

-- progress: fidget.nvim when installed, else virtual text by the extmark ---------------
-- setup({ progress = true | false | { message = function(info) return string end } }):
-- the message function words both; info is progress_info()'s table.

local function progress_opts()
  local p = M.config.progress
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
  if not status then
    status = job.written and 'streaming' or (job.note and 'retrying' or 'waiting')
  end
  return {
    id = job.id,
    bufnr = job.buf,
    label = job.label,
    preset = job.preset,
    model = job.model,
    elapsed = (vim.uv.hrtime() - job.started) / 1e9,
    chars = job.chars,
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

local function progress_update(job, frame)
  if job.done then
    return
  end
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
  local ok, pos = pcall(api.nvim_buf_get_extmark_by_id, job.buf, ns, job.tail, {})
  if not ok or not pos[1] then
    return
  end
  job.frame = frame or job.frame or 1
  pcall(api.nvim_buf_set_extmark, job.buf, ns, pos[1], pos[2], {
    id = job.indicator,
    virt_text = { { (' %s %s'):format(spinner[job.frame], text), 'KznllmProgress' } },
    virt_text_pos = 'eol',
    right_gravity = true,
  })
end

local function progress_start(job)
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
    local r, c = mark_pos(job.buf, job.tail)
    job.indicator = api.nvim_buf_set_extmark(job.buf, ns, r, c, {})
    progress_update(job, 1)
  end
  job.timer = vim.uv.new_timer()
  local tick = 0
  job.timer:start(
    100,
    100,
    vim.schedule_wrap(function()
      tick = tick + 1
      progress_update(job, tick % #spinner + 1)
    end)
  )
end

local function progress_stop(job, status, usage)
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

--- The preset id and model a job runs with, as far as the editor knows them (the host
--- may tell more with meta()): opts.preset, else the current preset, and its model when
--- it is one of setup()'s presets.
local function preset_and_model(opts)
  local preset, model = opts.preset, opts.model
  local ok, kzn = pcall(require, 'kznllm')
  if not ok or type(kzn) ~= 'table' then
    return preset, model
  end
  if not preset and type(kzn.current_preset) == 'function' then
    preset = kzn.current_preset() or nil
  end
  for _, p in ipairs(not model and kzn.config and kzn.config.presets or {}) do
    if type(p) == 'table' and p.id == preset then
      model = p.model
    end
  end
  return preset, model
end

-- <Esc> cancels while a job runs in the buffer ---------------------------------------

local function running_in(buf)
  local n = 0
  for _, job in pairs(M.jobs) do
    if job.buf == buf and not job.done then
      n = n + 1
    end
  end
  return n
end

local function map_cancel(buf)
  local key = M.config.cancel_key
  if not key or running_in(buf) > 1 then
    return
  end
  local prev = vim.fn.maparg(key, 'n', false, true)
  if prev and prev.buffer == 1 then
    vim.b[buf].kznllm_saved_map = prev
  end
  vim.keymap.set('n', key, function()
    M.cancel_buffer(buf)
  end, { buffer = buf, desc = 'kznllm: cancel the running request', nowait = true })
end

local function unmap_cancel(buf)
  local key = M.config.cancel_key
  if not key or not api.nvim_buf_is_valid(buf) or running_in(buf) > 0 then
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

-- the job's life ---------------------------------------------------------------------

--- Start tracking a generation. `range` = { srow, scol, erow, ecol } (0-based, end
--- exclusive) of the text to replace, or the cursor position twice for yap mode.
--- `block` = list of { row, scol, ecol } for a blockwise selection.
function M.new(buf, range, opts)
  next_id = next_id + 1
  local id = next_id
  local job = {
    id = id,
    buf = buf,
    replace = opts.replace,
    block = opts.block,
    label = opts.label or 'kznllm',
    started = vim.uv.hrtime(),
    written = false,
    chars = 0,
    on_done = opts.on_done, -- called with the status once the job ends
  }
  job.preset, job.model = preset_and_model(opts)
  job.head = api.nvim_buf_set_extmark(buf, ns, range[1], range[2], { right_gravity = false })
  job.tail = api.nvim_buf_set_extmark(buf, ns, range[3], range[4], { right_gravity = true })
  if opts.replace then
    -- the selection stays until the first token replaces it: a request that fails
    -- before then leaves the buffer exactly as it was
    job.pending = api.nvim_buf_set_extmark(buf, ns, range[1], range[2], {
      end_row = range[3],
      end_col = range[4],
      hl_group = 'KznllmPending',
      right_gravity = false,
      end_right_gravity = true,
    })
  end
  M.jobs[id] = job
  map_cancel(buf)
  progress_start(job)
  pcall(api.nvim_exec_autocmds, 'User', {
    pattern = 'KznllmStart',
    data = { id = id, bufnr = buf, mode = opts.replace and 'replace' or 'yap' },
  })
  return job
end

local function first_write(job, lines)
  local buf = job.buf
  -- a new undo step for this generation (see :help undo-break)
  vim.o.undolevels = vim.o.undolevels
  local sr, sc = mark_pos(buf, job.head)
  local er, ec = mark_pos(buf, job.tail)
  if job.block then
    -- remove the block's columns, bottom up, then write at its top-left corner
    for i = #job.block, 1, -1 do
      local b = job.block[i]
      local len = #api.nvim_buf_get_lines(buf, b[1], b[1] + 1, true)[1]
      local s, e = math.min(b[2], len), math.min(b[3], len)
      if e > s then
        api.nvim_buf_set_text(buf, b[1], s, b[1], e, { '' })
      end
    end
    er, ec = sr, sc
    -- the tail sat at the block's bottom-right: later writes go after this first one
    api.nvim_buf_set_extmark(buf, ns, sr, sc, { id = job.tail, right_gravity = true })
  end
  api.nvim_buf_set_text(buf, sr, sc, er, ec, lines)
  if job.pending then
    pcall(api.nvim_buf_del_extmark, buf, ns, job.pending)
    job.pending = nil
  end
end

local function write_now(job, text)
  local buf = job.buf
  local lines = vim.split(text, '\n', { plain = true })
  api.nvim_buf_call(buf, function()
    if not job.written then
      first_write(job, lines)
      job.written = true
    else
      if vim.fn.changenr() < job.changenr then
        job.undone = true -- the user undid (part of) the generation: write no more
        return
      end
      pcall(vim.cmd, 'undojoin')
      local r, c = mark_pos(buf, job.tail)
      api.nvim_buf_set_text(buf, r, c, r, c, lines)
    end
    job.changenr = vim.fn.changenr()
    job.chars = job.chars + #text
  end)
end

--- A note from the host shown with the progress (a retry's wait), until the text comes.
function M.note(id, text)
  local job = M.jobs[id]
  if not job or job.done then
    return
  end
  job.note = text
  progress_update(job)
end

--- From the host, when it knows them: the preset's id and model (for progress messages).
function M.meta(id, meta)
  local job = M.jobs[id]
  if job and type(meta) == 'table' then
    job.preset = meta.preset or job.preset
    job.model = meta.model or job.model
  end
end

--- Called by the host with each coalesced batch of text.
function M.write(id, text)
  local job = M.jobs[id]
  if not job or job.done or job.stopping then
    return
  end
  if not api.nvim_buf_is_valid(job.buf) then
    return M.stop(id, 'cancelled', 'the buffer was closed')
  end
  local ok, err = pcall(write_now, job, text)
  require('kznllm.pace').wrote(id)
  if not ok then
    -- one clean line: no "Error executing lua", file positions or traceback
    local why = tostring(err)
      :gsub('\nstack traceback:.*', '')
      :gsub('Error executing lua: ', '')
      :gsub('[^%s]+%.lua:%d+: ', '')
    M.stop(id, 'error', 'could not write to the buffer: ' .. why)
  elseif job.undone then
    M.stop(id, 'cancelled', 'undone while streaming; the rest of the answer was dropped')
  end
end

local function end_message(job, status, err, info)
  local secs = (vim.uv.hrtime() - job.started) / 1e9
  if status == 'ok' then
    local usage = info and info.usage
    local extra = ''
    if info and info.first_token_ms then
      extra = (', first token %.2fs'):format(info.first_token_ms / 1000)
    end
    if usage and usage.output_tokens then
      extra = extra
        .. (', %s tokens in, %s out'):format(usage.input_tokens or '?', usage.output_tokens)
    end
    if info and info.tokens_per_s then
      extra = extra .. (', %.0f tokens/s'):format(info.tokens_per_s)
    end
    if info and info.skipped_files then
      extra = extra
        .. ('; %d .kzn file(s) left out (:KznDebug shows which and why)'):format(info.skipped_files)
    end
    if info and info.finish_reason == 'length' then
      return ('kznllm: the answer was cut at the token limit (truncated) after %.1fs%s'):format(
        secs,
        extra
      ),
        vim.log.levels.WARN
    end
    return ('kznllm: done in %.1fs%s'):format(secs, extra), vim.log.levels.INFO
  end
  local kept = job.written and ' (partial output kept)' or ' (buffer unchanged)'
  if status == 'cancelled' then
    return 'kznllm: cancelled' .. (err and (': ' .. err) or '') .. kept, vim.log.levels.WARN
  end
  return 'kznllm: ' .. (err or 'failed') .. kept, vim.log.levels.ERROR
end

--- The end of a job, from the host (status 'ok'|'error'|'cancelled') or from the editor.
function M.finish(id, status, err, info)
  if err == vim.NIL then
    err = nil
  end
  if info == vim.NIL then
    info = nil
  end
  local job = M.jobs[id]
  if not job or job.done then
    return
  end
  job.done = true
  M.jobs[id] = nil
  require('kznllm.pace').forget(id)
  local buf = job.buf
  if job.stop_reason then
    status, err = job.stop_reason[1], job.stop_reason[2]
  end
  job.preset = info and info.preset or job.preset
  progress_stop(job, status, info and info.usage)
  if api.nvim_buf_is_valid(buf) then
    if job.pending then
      pcall(api.nvim_buf_del_extmark, buf, ns, job.pending)
    end
    if status ~= 'ok' and job.written then
      -- mark partial output: a note at its end, until the next fill or :KznClear
      local ok, pos = pcall(api.nvim_buf_get_extmark_by_id, buf, ns, job.tail, {})
      if ok and pos[1] then
        pcall(api.nvim_buf_set_extmark, buf, ns, pos[1], pos[2], {
          virt_text = { { ' ⚠ kznllm: partial output (' .. status .. ')', 'KznllmPartial' } },
          virt_text_pos = 'eol',
        })
      end
    end
    pcall(api.nvim_buf_del_extmark, buf, ns, job.head)
    pcall(api.nvim_buf_del_extmark, buf, ns, job.tail)
    unmap_cancel(buf)
  end
  local msg, level = end_message(job, status, err, info)
  local notable = info and (info.finish_reason == 'length' or info.skipped_files)
  if status ~= 'ok' or notable or M.config.notify_done then
    notify(msg, level)
  else
    vim.api.nvim_echo({ { msg } }, true, {}) -- kept in :messages, for its timings
  end
  if info and info.notice then
    M.notice_once(info.notice)
  end
  local data = { id = id, bufnr = buf, status = status, chars = job.chars, entry = job.entry_id }
  if err then
    data.error = err
  end
  if info and info.usage then
    data.usage = info.usage
  end
  if job.on_done then
    pcall(job.on_done, status)
  end
  pcall(api.nvim_exec_autocmds, 'User', { pattern = 'KznllmDone', data = data })
end

--- From the host: the history entry recording job `id`. A conversation buffer (debug
--- view, history entry, re-run) continues from the entry its last answer went to.
function M.entry(id, entry_id, buf)
  local job = M.jobs[id]
  if job then
    job.entry_id = entry_id
  end
  if buf and api.nvim_buf_is_valid(buf) and vim.b[buf].kznllm_conversation then
    vim.b[buf].kznllm_entry = entry_id
  end
end

--- A notice shown once per install (a flag file in the data dir remembers it).
function M.notice_once(text)
  local flag = vim.fn.stdpath('data') .. '/kznllm/demo-notice-shown'
  if vim.fn.filereadable(flag) == 1 then
    return
  end
  vim.fn.mkdir(vim.fn.fnamemodify(flag, ':h'), 'p')
  vim.fn.writefile({ os.date('%Y-%m-%d') }, flag)
  notify(text, vim.log.levels.WARN)
end

--- Stop a job from the editor side: no more writes land, the host is told to cancel.
function M.stop(id, status, reason)
  local job = M.jobs[id]
  if not job or job.done or job.stopping then
    return
  end
  job.stopping = true
  job.stop_reason = { status, reason }
  local host = require('kznllm.host')
  if host.chan then
    pcall(host.notify, 'cancel', { id = id })
  else
    M.finish(id, status, reason)
  end
end

-- a buffer that goes away takes its streams with it
api.nvim_create_autocmd({ 'BufUnload', 'BufWipeout' }, {
  group = api.nvim_create_augroup('kznllm_jobs', { clear = true }),
  callback = function(ev)
    for id, job in pairs(M.jobs) do
      if job.buf == ev.buf then
        M.stop(id, 'cancelled', 'the buffer was closed')
      end
    end
  end,
})

function M.cancel_buffer(buf)
  local n = 0
  for id, job in pairs(M.jobs) do
    if job.buf == buf then
      M.stop(id, 'cancelled', nil)
      n = n + 1
    end
  end
  return n
end

function M.host_died()
  for id in pairs(M.jobs) do
    M.finish(id, 'error', 'the Python host exited')
  end
end

function M.clear_marks(buf)
  buf = buf or api.nvim_get_current_buf()
  for _, m in ipairs(api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true })) do
    local d = m[4]
    if d and d.virt_text and d.virt_text[1] and d.virt_text[1][2] == 'KznllmPartial' then
      api.nvim_buf_del_extmark(buf, ns, m[1])
    end
  end
end

--- How many jobs run, and when the oldest started (vim.uv.hrtime()).
function M.running()
  local n, oldest = 0, nil
  for _, job in pairs(M.jobs) do
    if not job.done then
      n = n + 1
      oldest = math.min(oldest or job.started, job.started)
    end
  end
  return n, oldest
end

return M
