-- Jobs in the editor: one job, one state. A job is a small state machine
--
--   waiting ──first text──► streaming ──► stopping ──► done
--      └──────────────────────┴────────────┴───────────┘ (the host's end: done)
--
-- with one `state` field, its transitions named and logged (setup({ log = { level =
-- 'debug' } }) puts them in the host's log). What a job does is split by concern:
--   job/region.lua    every position a request uses, as extmarks from the keypress
--   job/write.lua     the atomic writes (undojoin + set_text: one generation, one undo step)
--   job/undo.lua      which writes are still in effect; where an undo step starts
--   job/progress.lua  the progress indicator (fidget.nvim or virtual text)
--   job/cancel.lua    the cancel key (<Esc>)
-- The Python host calls write() and finish() as notifications; nothing here waits on
-- the network. The review (lua/kznllm/review.lua) is built on the same helpers.
local M = {}

local api = vim.api
local region = require('kznllm.job.region')
local write = require('kznllm.job.write')
local undo = require('kznllm.job.undo')
local progress = require('kznllm.job.progress')
local cancel = require('kznllm.job.cancel')
local ns = region.ns
M.ns = ns

---@alias kznllm.JobState 'waiting'|'streaming'|'stopping'|'done'

---@class kznllm.Job
---@field id integer
---@field buf integer
---@field state kznllm.JobState
---@field region table where it writes (job/region.lua's capture)
---@field replace boolean|nil the region is a selection to replace
---@field review boolean|nil its answer is drawn as a review
---@field follow boolean|nil a scratch buffer: windows follow the stream's end
---@field placement string where a point region writes
---@field auto boolean the preset decides the placement
---@field label string
---@field preset string|nil
---@field model string|nil
---@field started integer vim.uv.hrtime() at the start
---@field chars integer bytes written
---@field tokens integer|nil the host's estimate of the answer's tokens
---@field head integer|nil extmark at the answer's start (from its first text)
---@field tail integer|nil extmark after its end
---@field pending integer|nil extmark highlighting the selection until text comes
---@field seq integer|nil the change number of its last write
---@field stop_reason table|nil { status, reason } when the editor ended it
---@field chan integer|nil the host channel that runs it
---@field entry_id integer|nil its history entry
---@field on_done function|nil called with the status once it ends

---@type table<integer, kznllm.Job>
M.jobs = {}
local next_id = 0

local config = require('kznllm.config')

local function hl_defaults()
  api.nvim_set_hl(0, 'KznllmPending', { default = true, link = 'Visual' })
  api.nvim_set_hl(0, 'KznllmProgress', { default = true, link = 'Comment' })
  api.nvim_set_hl(0, 'KznllmPartial', { default = true, link = 'DiagnosticWarn' })
end
hl_defaults()

local notify = require('kznllm.notify').notify
local mark_pos = region.mark_pos

-- the state machine ----------------------------------------------------------------------

local NEXT = {
  waiting = { streaming = true, stopping = true, done = true },
  streaming = { stopping = true, done = true },
  stopping = { done = true },
  done = {},
}

--- Move `job` to `state` (`why`: the transition's name); false when that is no move
--- from where it stands (a late word for a job already stopping or done).
local function to(job, state, why)
  if not NEXT[job.state][state] then
    return false
  end
  local lvl = (config.options.log or {}).level
  if lvl == 'debug' then
    local host = require('kznllm.host')
    local line = ('job %d: %s -> %s (%s)'):format(job.id, job.state, state, why)
    if host.chan then
      pcall(host.notify, 'log', { text = line })
    end
  end
  job.state = state
  return true
end

--- Does `job` still take text (waiting for it, or streaming)?
local function live(job)
  return job.state == 'waiting' or job.state == 'streaming'
end
M.live = live

-- the preset a job runs with -------------------------------------------------------------

--- The preset id and model a job runs with, as far as the editor knows them before the
--- host has said (resolve()): opts.preset, else the current preset, and its model when
--- it is one of setup()'s presets.
local function preset_and_model(opts)
  local preset, model = opts.preset, opts.model
  if not preset then
    preset = require('kznllm.presets').current_preset() or nil
  end
  for _, p in ipairs(not model and config.options.presets or {}) do
    if type(p) == 'table' and p.id == preset then
      model = p.model
    end
  end
  return preset, model
end

--- `job`'s preset, model and 'auto' placement as the host resolved them (host.known,
--- from the settings it got: the default preset, a model picked with :KznPreset!, a
--- fill-in-the-middle preset's answer at the cursor), once it has said them; it says
--- them before any text of a fill it runs with them.
local function resolve(job)
  local known = require('kznllm.host').known
  if job.resolved or not known then
    return
  end
  job.resolved = true
  local id = job.preset or known.default
  local p = known.presets[id or '']
  if p then
    job.preset, job.model = id, p.model
    if job.auto and not job.head and job.region.kind == 'point' then
      job.placement = p.auto
    end
  end
end

-- regions (job/region.lua), for the callers of require('kznllm.job')
M.line_len = region.line_len
M.region_text = region.region_text
M.selection = region.selection
M.region_changed = region.region_changed
M.capture = region.capture
M.release = region.release
M.bounds = region.bounds
M.spot = region.spot
M.text_bounds = region.text_bounds

--- Where `job` is now: its answer once text came, else its region ({ srow, scol, erow,
--- ecol }), or nil when gone.
function M.answer_bounds(job)
  if job.head then
    local h = api.nvim_buf_get_extmark_by_id(job.buf, ns, job.head, {})
    local t = api.nvim_buf_get_extmark_by_id(job.buf, ns, job.tail, {})
    return h[1] and t[1] and { h[1], h[2], t[1], t[2] } or nil
  end
  return region.bounds(job.region, job.placement)
end

--- The running job in `buf` whose region or answer overlaps (or touches) `b`, if any.
function M.overlapping(buf, b)
  for _, job in pairs(M.jobs) do
    if job.buf == buf and live(job) then
      local o = M.answer_bounds(job)
      local meet = region.before_or_at
      if o and meet(b[1], b[2], o[3], o[4]) and meet(o[1], o[2], b[3], b[4]) then
        return job
      end
    end
  end
  return nil
end

-- the position progress shows at: the answer's end, or the region's until text comes
local function anchor(job)
  if job.head then
    return mark_pos(job.buf, job.tail)
  end
  local b = region.bounds(job.region, job.placement)
  if not b then
    return nil
  end
  if job.region.kind ~= 'point' then
    b = region.text_bounds(job.region) -- by the last selected line, not the next
  end
  return b[3], b[4]
end

progress.hooks = { anchor = anchor, resolve = resolve }
M.default_message = progress.default_message

--- Does an answer stream into `buf` now?
function M.streaming_in(buf)
  return cancel.running_in(buf) > 0
end

M.cancel_at_cursor = cancel.at_cursor

-- A change by anyone else in a buffer with jobs: check them once the change is done.
local function check_buffer(buf)
  if not api.nvim_buf_is_valid(buf) then
    return
  end
  for id, job in pairs(M.jobs) do
    if job.buf == buf and live(job) then
      if job.head then
        local still = api.nvim_buf_call(buf, function()
          return undo.in_effect(job)
        end)
        if not still then
          M.stop(id, 'cancelled', M.UNDONE)
        end
      elseif region.region_changed(job.region) then
        M.stop(id, 'cancelled', M.CHANGED)
      end
    end
  end
end

local function watch_buffer(buf)
  require('kznllm.job.watch').watch(
    'job',
    buf,
    function(b)
      return cancel.running_in(b) > 0
    end,
    check_buffer,
    function()
      return write.writing
    end
  )
end

-- the job's life ---------------------------------------------------------------------

M.UNDONE = 'undone while streaming; the rest of the answer was dropped'
M.CHANGED = 'the selected text was changed before the answer came; nothing was replaced'
M.DELETED = 'the answer was deleted while streaming; the rest was dropped'
M.REJECTED = 'rejected while streaming; the original is back'

--- Start tracking a generation at region `where` (from M.capture). opts.replace: the region
--- is a selection to replace; opts.placement: where a point region writes ('cursor',
--- 'line' = on a blank line or below it, 'below', 'above').
function M.new(buf, where, opts)
  next_id = next_id + 1
  local id = next_id
  local job = {
    id = id,
    buf = buf,
    region = where,
    replace = opts.replace,
    follow = opts.follow,
    review = opts.replace and opts.review and where.kind == 'range' or nil,
    placement = opts.placement == 'auto' and 'line' or opts.placement or 'cursor',
    auto = opts.placement == 'auto', -- the preset decides (resolve())
    label = opts.label or 'kznllm',
    started = vim.uv.hrtime(),
    state = 'waiting',
    chars = 0,
    on_done = opts.on_done, -- called with the status once the job ends
  }
  job.preset, job.model = preset_and_model(opts)
  resolve(job)
  if opts.replace then
    -- the selection stays until the first token replaces it: a request that fails
    -- before then leaves the buffer exactly as it was
    local b = region.bounds(where)
    job.pending = api.nvim_buf_set_extmark(buf, ns, b[1], b[2], {
      end_row = b[3],
      end_col = b[4],
      hl_group = 'KznllmPending',
      right_gravity = true,
      end_right_gravity = false,
    })
  end
  M.jobs[id] = job
  return job
end

--- What shows that `job` (from M.new) started: the statusline, <Esc> to cancel it, the
--- watch of its buffer, its progress, `User KznllmStart`. Called once its request is on
--- its way (the keypress's tick: nothing the host answers is handled before it).
function M.started(job)
  local buf = job.buf
  pcall(vim.cmd, 'redrawstatus!') -- a statusline with require('kznllm').status()
  cancel.map(buf)
  watch_buffer(buf)
  progress.start(job)
  pcall(api.nvim_exec_autocmds, 'User', {
    pattern = 'KznllmStart',
    data = { id = job.id, bufnr = buf, mode = job.replace and 'replace' or 'yap' },
  })
end

--- From the host at the end of a replace: the whole answer becomes `text` (a chatty
--- answer cut down to its code), in the answer's undo step.
function M.rewrite(id, text)
  local job = M.jobs[id]
  if not job or job.state ~= 'streaming' or not api.nvim_buf_is_valid(job.buf) then
    return
  end
  write.rewrite(job, text)
end

--- A note from the host shown with the progress (a retry's wait), until the text comes.
function M.note(id, text)
  local job = M.jobs[id]
  if not job or job.state == 'done' then
    return
  end
  job.note = text
  progress.update(job)
end

local WHY = { undone = 'UNDONE', deleted = 'DELETED' }

--- Called by the host with each coalesced batch of text, and the tokens of all the text
--- so far (its estimate: the progress and the sidebar show it).
function M.write(id, text, tokens)
  require('kznllm.host').heard()
  local job = M.jobs[id]
  if not job or not live(job) then
    return
  end
  resolve(job) -- before the first text: where 'auto' puts it
  job.tokens = tokens or job.tokens
  if not api.nvim_buf_is_valid(job.buf) then
    return M.stop(id, 'cancelled', 'the buffer was closed')
  end
  if not job.head and region.region_changed(job.region) then
    return M.stop(id, 'cancelled', M.CHANGED)
  end
  local ok, why = pcall(write.write, job, text)
  require('kznllm.pace').wrote(id)
  if not ok then
    -- one clean line: no "Error executing lua", file positions or traceback
    local err = tostring(why)
      :gsub('\nstack traceback:.*', '')
      :gsub('Error executing lua: ', '')
      :gsub('[^%s]+%.lua:%d+: ', '')
    M.stop(id, 'error', 'could not write to the buffer: ' .. err)
  elseif why then
    M.stop(id, 'cancelled', M[WHY[why]])
  elseif job.state == 'waiting' then
    to(job, 'streaming', 'first text')
  end
end

local LEVELS = { info = vim.log.levels.INFO, warn = vim.log.levels.WARN }

--- The line that ends a job: the host's (kznllm_py/messages.py), unless the editor
--- ended it itself (an undo, a change, the watchdog): then its reason.
local function end_message(job, status, err, info)
  if info and info.message and not job.stop_reason then
    return 'kznllm: ' .. info.message, LEVELS[info.level] or vim.log.levels.ERROR
  end
  local kept = job.head and ' (partial output kept)' or ' (buffer unchanged)'
  if err == M.UNDONE or err == M.CHANGED or err == M.DELETED or err == M.REJECTED then
    kept = '' -- the message says what became of the text
  end
  if status == 'cancelled' then
    return 'kznllm: cancelled' .. (err and (': ' .. err) or '') .. kept, vim.log.levels.WARN
  end
  return 'kznllm: ' .. (err or 'failed') .. kept, vim.log.levels.ERROR
end

--- The end of a job, from the host (status 'ok'|'error'|'cancelled') or from the editor.
function M.finish(id, status, err, info)
  require('kznllm.host').heard()
  if err == vim.NIL then
    err = nil
  end
  if info == vim.NIL then
    info = nil
  end
  local job = M.jobs[id]
  if not job or not to(job, 'done', 'ended ' .. tostring(status)) then
    return
  end
  M.jobs[id] = nil
  require('kznllm.pace').forget(id)
  if job.ack_timer then
    job.ack_timer:stop()
    job.ack_timer:close()
    job.ack_timer = nil
  end
  local buf = job.buf
  if job.stop_reason then
    status, err = job.stop_reason[1], job.stop_reason[2]
  end
  job.preset = info and info.preset or job.preset
  progress.stop(job, status, info and info.usage)
  if api.nvim_buf_is_valid(buf) then
    if job.pending then
      pcall(api.nvim_buf_del_extmark, buf, ns, job.pending)
    end
    region.release(job.region)
    local undone = err == M.UNDONE or err == M.DELETED or err == M.REJECTED
    if status ~= 'ok' and job.head and not undone then
      -- mark partial output: a note at its end, until the next fill or :KznClear
      local ok, pos = pcall(api.nvim_buf_get_extmark_by_id, buf, ns, job.tail, {})
      if ok and pos[1] then
        local marked, mark = pcall(api.nvim_buf_set_extmark, buf, ns, pos[1], pos[2], {
          virt_text = { { ' ⚠ kznllm: partial output (' .. status .. ')', 'KznllmPartial' } },
          virt_text_pos = 'eol',
        })
        if marked then -- `u` that takes the text back takes the note too
          require('kznllm.partial_mark').until_undone(buf, ns, mark, job.seq)
          job.partial_note = mark -- a review that rejects all of it takes it too
        end
      end
    end
    pcall(api.nvim_buf_del_extmark, buf, ns, job.head)
    pcall(api.nvim_buf_del_extmark, buf, ns, job.tail)
    cancel.unmap(buf)
  end
  if job.held then
    require('kznllm.stream_highlight').release(buf)
  end
  pcall(vim.cmd, 'redrawstatus!') -- no stale spinner in a statusline
  local msg, level = end_message(job, status, err, info)
  local notable = info and (info.finish_reason == 'length' or info.skipped_files)
  if job.review then
    -- the review gets what arrived: hunks to accept or reject, and one line says so
    -- (an answer undone, deleted or rejected while it streamed ends it)
    local gone = err == M.UNDONE or err == M.DELETED or err == M.REJECTED or not job.head
    local line = require('kznllm.review').complete(id, gone, job.entry_id, job.partial_note)
    if line then
      msg = status == 'ok' and 'kznllm: ' .. line or msg .. ' · ' .. line
      notable = true
    end
  end
  if job.quiet then
    -- ended with others by the watchdog, which says so once for all of them
    vim.api.nvim_echo({ { msg } }, true, {})
  elseif status ~= 'ok' or notable or config.options.notify_done then
    notify(msg, level)
  else
    require('kznllm.notify').routine(msg) -- kept in :messages, for its timings
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
  if info and info.writes then
    -- how the answer went in: buffer writes, and the pace they settled at
    data.writes, data.pace_ms = info.writes, info.pace_ms
  end
  if err == M.REJECTED then
    -- after the host recorded the end: history says "rejected"
    require('kznllm.review').record_rejected(job.entry_id)
  end
  if job.on_done then
    pcall(job.on_done, status, info)
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
  if not job or not to(job, 'stopping', reason or status) then
    return
  end
  job.stop_reason = { status, reason }
  local host = require('kznllm.host')
  if not job.chan or job.chan ~= host.chan then
    return M.finish(id, status, reason) -- its host is gone: nothing to wait for
  end
  pcall(host.notify, 'cancel', { id = id })
  -- the watchdog: a host that does not end the job within a second is wedged (one
  -- still starting, that has not said a word yet, gets its startup time)
  local limit = host.alive() and host.limits().cancel or host.limits().startup
  job.ack_timer = vim.uv.new_timer()
  job.ack_timer:start(
    math.floor(limit * 1000),
    0,
    vim.schedule_wrap(function()
      if job.state ~= 'done' then
        host.wedged(job.chan, ('did not answer a cancel within %g s'):format(limit))
      end
    end)
  )
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

--- The host on channel `chan` exited: its jobs end here.
function M.host_died(chan)
  for id, job in pairs(M.jobs) do
    if job.chan == nil or job.chan == chan then
      M.finish(id, 'error', 'the Python host exited')
    end
  end
end

--- The watchdog found the host on `chan` wedged and killed it: end its jobs in the
--- editor (partial text kept and marked, a selection untouched if nothing came).
--- Returns how many ended, and how many had written text.
function M.end_jobs_of(chan, reason)
  local n, partial = 0, 0
  for id, job in pairs(M.jobs) do
    if job.chan == chan and job.state ~= 'done' then
      n = n + 1
      partial = partial + (job.head and 1 or 0)
      job.quiet = true
      job.stop_reason = nil
      M.finish(id, 'error', reason)
    end
  end
  return n, partial
end

--- Jobs that wait on the host on `chan`.
function M.waiting_on(chan)
  for _, job in pairs(M.jobs) do
    if job.chan == chan and job.state ~= 'done' then
      return true
    end
  end
  return false
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
    if job.state ~= 'done' then
      n = n + 1
      oldest = math.min(oldest or job.started, job.started)
    end
  end
  return n, oldest
end

return M
