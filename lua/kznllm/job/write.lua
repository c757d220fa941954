-- A job's writes: the atomic write helper (undojoin + set_text at the job's extmarks,
-- so one generation is one undo step), the first write that replaces a selection or
-- places an answer, and the host's rewrite of a chatty answer.
local M = {}

local api = vim.api
local region = require('kznllm.job.region')
local undo = require('kznllm.job.undo')
local ns = region.ns
local mark_pos, end_of = region.mark_pos, region.end_of
local line_len = region.line_len

--- True while a write of ours runs (the buffer watch ignores it).
M.writing = false

local split = require('kznllm.text').split

--- The lines of `text`, as vim.split(text, '\n', { plain = true }) gives them, with
--- text.lua's find loop (on every write's path).
function M.lines_of(text)
  return split(text, '\n')
end

local function jobs()
  return require('kznllm.job').jobs
end

-- Another job's marks exactly where `job` is about to insert at (r, c): once the text
-- between two places is deleted they can meet, and gravity alone would then put this
-- text inside the other's place (or the other's next text inside this one's).
local function marks_at(job, r, c)
  local found = {}
  for _, other in pairs(jobs()) do
    if other ~= job and other.buf == job.buf and other.state ~= 'done' then
      local ids = {}
      if other.head then
        ids = { { other.head, false }, { other.tail, true } }
      elseif other.region.kind == 'point' then
        ids = { { other.region.point, false }, { other.region.line, false } }
      end
      for _, x in ipairs(ids) do
        local mr, mc = mark_pos(job.buf, x[1])
        if mr == r and mc == c then
          table.insert(found, x)
        end
      end
    end
  end
  return found
end

-- ... and after it wrote (r, c) .. (er, ec): an answer that ended there still ends
-- before this text; one that started (or writes) there starts after it.
local function keep_out(found, buf, r, c, er, ec)
  for _, x in ipairs(found) do
    local tail = x[2]
    api.nvim_buf_set_extmark(buf, ns, tail and r or er, tail and c or ec, {
      id = x[1],
      right_gravity = tail,
    })
  end
end

-- where a point region writes now, and the lines to write there: the answer's text
-- starts after `skip` of them (a new line below); above, a line break follows it
local function point_target(job, lines)
  local r = job.region
  if job.placement == 'cursor' then
    local p = api.nvim_buf_get_extmark_by_id(job.buf, ns, r.point, {})
    return p[1], p[2], p[1], p[2], lines, 0
  end
  local row = api.nvim_buf_get_extmark_by_id(job.buf, ns, r.line, {})[1]
  local len = line_len(job.buf, row) or 0
  if job.placement == 'above' then
    local out = vim.list_extend({}, lines)
    table.insert(out, '')
    return row, 0, row, 0, out, 0
  end
  if job.placement == 'line' and region.blank_line(job.buf, row, len) then
    return row, len, row, len, lines, 0
  end
  local out = { '' }
  vim.list_extend(out, lines)
  return row, len, row, len, out, 1
end

local function first_write(job, lines)
  local buf = job.buf
  local r = job.region
  local sr, sc
  if r.kind == 'point' then
    local er, ec, out, skip
    sr, sc, er, ec, out, skip = point_target(job, lines)
    local found = marks_at(job, sr, sc)
    api.nvim_buf_set_text(buf, sr, sc, er, ec, out)
    keep_out(found, buf, sr, sc, end_of(sr, sc, out))
    if skip > 0 then
      sr, sc = sr + skip, 0
    end
  else
    local s = region.spans(r)
    if r.kind == 'block' then
      -- remove the block's columns, bottom up, then write at its top-left corner
      for i = #s, 1, -1 do
        local x = s[i]
        if x[4] > x[2] then
          api.nvim_buf_set_text(buf, x[1], x[2], x[3], x[4], { '' })
        end
      end
      sr, sc = s[1][1], s[1][2]
      api.nvim_buf_set_text(buf, sr, sc, sr, sc, lines)
    else
      local x = s[1]
      local er, ec = x[3], x[4]
      if r.nl then -- up to the end of the last selected line, not its line break
        er = er - 1
        ec = line_len(buf, er) or 0
      end
      sr, sc = x[1], x[2]
      api.nvim_buf_set_text(buf, sr, sc, er, ec, lines)
    end
  end
  local tr, tc = end_of(sr, sc, lines)
  job.head = api.nvim_buf_set_extmark(buf, ns, sr, sc, { right_gravity = false })
  job.tail = api.nvim_buf_set_extmark(buf, ns, tr, tc, { right_gravity = true })
  if job.pending then
    pcall(api.nvim_buf_del_extmark, buf, ns, job.pending)
    job.pending = nil
  end
  if job.review then
    -- the text the answer replaced, as it was at the keypress (now gone from the buffer)
    local original = r.nl and r.text:sub(1, -2) or r.text
    require('kznllm.review').open(job.id, buf, { sr, sc, tr, tc }, original)
  end
  region.release(r)
end

-- the buffer's last change, when it was a write of ours: { tick, job }
local last_write = {}

--- The buffer's last change is now a write of `job` (the undo step later writes join,
--- and where undo detection starts from).
function M.wrote(job)
  if job.held then
    require('kznllm.stream_highlight').wrote(job.buf)
  end
  job.seq = vim.fn.changenr()
  last_write[job.buf] =
    { tick = api.nvim_buf_get_changedtick(job.buf), job = job.id, time = vim.uv.hrtime() }
end

--- Keep the windows of a scratch buffer at the end of the stream while their cursor
--- is there (one that the user moved up stays where it is).
local function follow(job)
  local last = api.nvim_buf_line_count(job.buf)
  for _, win in ipairs(vim.fn.win_findbuf(job.buf)) do
    if api.nvim_win_get_cursor(win)[1] >= (job.followed or 1) then
      pcall(api.nvim_win_set_cursor, win, { last, 0 })
    end
  end
  job.followed = last
end

--- Write `text` at the end of `job`'s answer (its first text: in place of the region
--- or where the point region says). Returns nil when written, or why nothing was:
--- 'undone' (an undo took the answer's last write back), 'deleted' (its text is gone).
function M.write(job, text)
  local buf = job.buf
  local lines = M.lines_of(text)
  local why = api.nvim_buf_call(buf, function()
    local tick = api.nvim_buf_get_changedtick(buf)
    local last = last_write[buf]
    -- join the undo step when the buffer's last change is a write of this job or of
    -- one streaming at the same time (still running, or written since this one
    -- started); anything else in between (an edit, an undo) starts a step of its own
    local other = last and jobs()[last.job]
    local joined = last
      and last.tick == tick
      and (last.job == job.id or (other and other.state ~= 'done') or last.time >= job.started)
    if job.head then
      if not joined and not undo.in_effect(job) then
        return 'undone' -- write no more, anywhere
      end
      local hr, hc = mark_pos(buf, job.head)
      local tr, tc = mark_pos(buf, job.tail)
      if job.chars > 0 and hr == tr and hc == tc then
        return 'deleted'
      end
    end
    undo.step(joined)
    M.writing = true
    local ok, err = pcall(function()
      if not job.head then
        job.held = require('kznllm.stream_highlight').hold(buf)
        first_write(job, lines)
      else
        local r, c = mark_pos(buf, job.tail)
        local found = marks_at(job, r, c)
        api.nvim_buf_set_text(buf, r, c, r, c, lines)
        keep_out(found, buf, r, c, end_of(r, c, lines))
      end
    end)
    M.writing = false
    if not ok then
      error(err, 0)
    end
    M.wrote(job)
    job.chars = job.chars + #text
    job.wrote_at = vim.uv.hrtime()
  end)
  if why == nil and job.follow then
    follow(job)
  end
  return why
end

--- The whole answer of `job` (written, still live) becomes `text` (a chatty answer cut
--- down to its code), in the answer's undo step.
function M.rewrite(job, text)
  local buf = job.buf
  api.nvim_buf_call(buf, function()
    local last = last_write[buf]
    if last and last.job == job.id and last.tick == api.nvim_buf_get_changedtick(buf) then
      undo.step(true)
    end
    local hr, hc = mark_pos(buf, job.head)
    local tr, tc = mark_pos(buf, job.tail)
    M.writing = true
    pcall(api.nvim_buf_set_text, buf, hr, hc, tr, tc, M.lines_of(text))
    M.writing = false
    M.wrote(job)
    job.chars = #text
  end)
end

return M
