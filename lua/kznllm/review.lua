-- Review before keeping: while a replace streams, the buffer holds the answer as real
-- text and the lines it replaces show as virtual lines beside the hunks that changed;
-- when it is complete the review stays open until every hunk is accepted or rejected.
--
-- The diff is Neovim's own (kznllm.review_diff, vim.diff): a few milliseconds for a
-- 2,500-line region, run here at most every REDRAW_MS while text lands, never on the
-- host's loop. Once the answer is complete each hunk is an extmark over the text it
-- holds now: accept and reject act where the hunk is, whatever was typed around it.
--
-- Undo: a reject is its own undo step, or joins the answer's when nothing came between
-- (b:changedtick unchanged since the answer ended); an accept changes no text and makes
-- no undo step. A hunk whose text the user changed is "edited": accept keeps the edit,
-- reject refuses. `u` / <C-r> of a reject reopen / re-reject its hunk.
local M = {}

local api = vim.api
local ns = api.nvim_create_namespace('kznllm_review') -- what is drawn
local track = api.nvim_create_namespace('kznllm_review_track') -- where things are
M.ns = ns

local config = require('kznllm.config')
local differ = require('kznllm.review_diff')
local region = require('kznllm.job.region')
local undo = require('kznllm.job.undo')
local notify = require('kznllm.notify').notify
local per_buffer = require('kznllm.per_buffer')

local REDRAW_MS = 100

local function keys()
  local km = config.options.keymaps
  return km and type(km.review) == 'table' and km.review or {}
end

local function hl_defaults()
  api.nvim_set_hl(0, 'KznllmReviewDelete', { default = true, link = 'DiffDelete' })
  api.nvim_set_hl(0, 'KznllmReviewAdd', { default = true, link = 'DiffAdd' })
  api.nvim_set_hl(0, 'KznllmReviewChange', { default = true, link = 'DiffChange' })
  api.nvim_set_hl(0, 'KznllmReviewPending', { default = true, link = 'Comment' })
end
hl_defaults()

---@class kznllm.ReviewHunk
---@field mark integer extmark (track namespace) over the hunk's text now
---@field text string what the answer put there (the hunk's text when it was shown)
---@field old_text string what a reject puts there
---@field old string[] the original lines (drawn while it is open)
---@field count integer the answer's lines in it
---@field kind 'add'|'change'|'delete'
---@field at_end boolean the hunk ends where the region ends (its text starts with "\n")
---@field state 'open'|'accepted'|'rejected'

---@class kznllm.Review
---@field id integer the job's id
---@field buf integer
---@field start integer extmark (track) at the region's first byte
---@field stop integer extmark (track) after the region's last byte
---@field original string the replaced text, byte for byte
---@field old string[] its lines
---@field hunks kznllm.ReviewHunk[] once complete
---@field stream table[] while streaming: the hunks so far { new_start, new_count, old }
---@field pending string[] while streaming: original lines the answer has not reached
---@field settled table while streaming: review_diff.stream's state (the settled hunks)
---@field diffed integer|nil answer lines the last streaming pass read and diffed
---@field complete boolean
---@field tick integer b:changedtick when the answer ended (a reject joins its undo step)
---@field entry integer|nil the answer's history entry
---@field timer uv.uv_timer_t|nil streaming: redraws the diff while text lands

---@type table<integer, kznllm.Review>
M.reviews = {} -- by job id

local function pos(buf, id)
  return region.mark_pos(buf, id, track)
end

local function in_buffer(buf)
  local out = {}
  for _, r in pairs(M.reviews) do
    if r.buf == buf then
      table.insert(out, r)
    end
  end
  table.sort(out, function(a, b)
    return (pos(a.buf, a.start) or 0) < (pos(b.buf, b.start) or 0)
  end)
  return out
end

--- The region's text now.
local function region_text(r)
  local sr, sc = pos(r.buf, r.start)
  local er, ec = pos(r.buf, r.stop)
  if not sr or not er or er < sr or (er == sr and ec < sc) then
    return nil
  end
  return table.concat(api.nvim_buf_get_text(r.buf, sr, sc, er, ec, {}), '\n')
end

--- The answer's lines from its line `from` (0-based) to its end, or nil when the region
--- is gone. Past the first line a line is whole, from column 0.
local function answer_lines(r, from)
  local sr, sc = pos(r.buf, r.start)
  local er, ec = pos(r.buf, r.stop)
  if not sr or not er or er < sr or (er == sr and ec < sc) then
    return nil
  end
  if from == 0 then
    return api.nvim_buf_get_text(r.buf, sr, sc, er, ec, {})
  end
  if sr + from > er then
    return nil
  end
  return api.nvim_buf_get_text(r.buf, sr + from, 0, er, ec, {})
end

--- The buffer line just before the unsettled part of the answer (nil: none settled).
local function settled_edge(r)
  local j = r.settled.j or 0
  local sr = j > 0 and pos(r.buf, r.start)
  if not sr then
    return nil
  end
  return api.nvim_buf_get_lines(r.buf, sr + j - 1, sr + j, false)[1]
end

--- A hunk's span now: srow, scol, erow, ecol.
local function span(r, h)
  local m = api.nvim_buf_get_extmark_by_id(r.buf, track, h.mark, { details = true })
  if not m[1] then
    return nil
  end
  return m[1], m[2], m[3].end_row or m[1], m[3].end_col or m[2]
end

local function hunk_text(r, h)
  local sr, sc, er, ec = span(r, h)
  if not sr then
    return nil
  end
  return table.concat(api.nvim_buf_get_text(r.buf, sr, sc, er, ec, {}), '\n')
end

--- The rows a hunk's lines stand on now (first, last; last < first: none, a deletion
--- that shows above `first`).
local function rows(r, h)
  local sr, sc, er, ec = span(r, h)
  if not sr then
    return nil
  end
  if h.at_end then
    -- "\n" .. lines: from the line after the mark's start to its end
    local first = (sc > 0 or sr < er) and h.count > 0 and sr + 1 or sr
    return first, h.count > 0 and er or first - 1
  end
  if ec == 0 and er > sr then
    return sr, er - 1
  end
  return sr, er - (h.count == 0 and 1 or 0)
end

-- drawing ------------------------------------------------------------------------------

local function virt(lines, group)
  local out = {}
  for _, line in ipairs(lines) do
    table.insert(out, { { line, group } })
  end
  return out
end

local function draw_review(r, last)
  local function put(row, opts)
    pcall(api.nvim_buf_set_extmark, r.buf, ns, math.max(0, math.min(row, last)), 0, opts)
  end
  local sr = pos(r.buf, r.start)
  local er = pos(r.buf, r.stop)
  if not sr or not er then
    return
  end
  if not r.complete then
    for _, h in ipairs(r.stream) do
      local row = sr + h.new_start
      if #h.old > 0 then
        put(row, { virt_lines = virt(h.old, 'KznllmReviewDelete'), virt_lines_above = true })
      end
      local group = #h.old == 0 and 'KznllmReviewAdd' or 'KznllmReviewChange'
      for i = 0, h.new_count - 1 do
        put(row + i, { line_hl_group = group, priority = 150 })
      end
    end
    if #r.pending > 0 then
      put(er, { virt_lines = virt(r.pending, 'KznllmReviewPending') })
    end
    return
  end
  for _, h in ipairs(r.hunks) do
    if h.state == 'open' then
      local first, final = rows(r, h)
      if first then
        if #h.old > 0 then
          local below = first > last
          put(below and last or first, {
            virt_lines = virt(h.old, 'KznllmReviewDelete'),
            virt_lines_above = not below,
          })
        end
        local group = h.kind == 'add' and 'KznllmReviewAdd' or 'KznllmReviewChange'
        for row = first, final do
          put(row, { line_hl_group = group, priority = 150 })
        end
      end
    end
  end
end

local shown_above = {} -- buf -> virtual lines above its first line, when last drawn

--- Virtual lines above a buffer's first line show only in a window scrolled up to them
--- ('topfill'): a window at the top is scrolled to show them when there are more than
--- at the last draw (a hunk's original on line 1, as in a whole-file review). Once: a
--- user who scrolls them away (CTRL-E) keeps that view.
local function show_above_first_line(buf)
  local n = 0
  for _, m in ipairs(api.nvim_buf_get_extmarks(buf, ns, 0, 0, { details = true })) do
    if m[4].virt_lines_above and m[4].virt_lines then
      n = n + #m[4].virt_lines
    end
  end
  local before = shown_above[buf] or 0
  shown_above[buf] = n > 0 and n or nil
  if n <= before then
    return
  end
  per_buffer.forget_on_wipeout(buf, shown_above)
  for _, win in ipairs(vim.fn.win_findbuf(buf)) do
    api.nvim_win_call(win, function()
      local view = vim.fn.winsaveview()
      if view.topline == 1 and view.topfill < n then
        vim.fn.winrestview({ topline = 1, topfill = n })
      end
    end)
  end
end

--- Redraw every review of `buf` (they share the namespace).
local function draw(buf)
  if not api.nvim_buf_is_valid(buf) then
    return
  end
  api.nvim_buf_clear_namespace(buf, ns, 0, -1)
  local last = api.nvim_buf_line_count(buf) - 1
  for _, r in ipairs(in_buffer(buf)) do
    draw_review(r, last)
  end
  show_above_first_line(buf)
end

-- keys ---------------------------------------------------------------------------------

-- The keys are mapped once per buffer while a review is open there, and only those that
-- shadow nothing: a key the user (or Neovim, 0.11's gr* maps) already maps, or that
-- would make a longer mapping wait for 'timeoutlen' (mapcheck()), is left alone; the
-- commands do what it would. The defaults are free keys (no built-in command either).
local mapped = {} -- buf -> the lhs we mapped there

local function map_keys(buf)
  if mapped[buf] then
    return
  end
  mapped[buf] = {}
  api.nvim_buf_call(buf, function()
    for name, lhs in pairs(keys()) do
      if type(lhs) == 'string' and lhs ~= '' and vim.fn.mapcheck(lhs, 'n') == '' then
        vim.keymap.set('n', lhs, function()
          M.key(name)
        end, { buffer = buf, desc = 'kznllm review: ' .. name:gsub('_', ' ') })
        mapped[buf][name] = lhs
      end
    end
  end)
end

local function unmap_keys(buf)
  for _, r in pairs(M.reviews) do
    if r.buf == buf then
      return -- another review in this buffer still uses them
    end
  end
  local was = mapped[buf]
  mapped[buf] = nil
  if not was or not api.nvim_buf_is_valid(buf) then
    return
  end
  for _, lhs in pairs(was) do
    pcall(vim.keymap.del, 'n', lhs, { buffer = buf })
  end
end

-- the life of a review -----------------------------------------------------------------

local function stop_timer(r)
  if r.timer then
    r.timer:stop()
    r.timer:close()
    r.timer = nil
  end
end

local function close(r)
  M.reviews[r.id] = nil
  stop_timer(r)
  unmap_keys(r.buf)
  if api.nvim_buf_is_valid(r.buf) then
    for _, h in ipairs(r.hunks) do
      pcall(api.nvim_buf_del_extmark, r.buf, track, h.mark)
    end
    pcall(api.nvim_buf_del_extmark, r.buf, track, r.start)
    pcall(api.nvim_buf_del_extmark, r.buf, track, r.stop)
    draw(r.buf)
  end
  pcall(api.nvim_exec_autocmds, 'User', {
    pattern = 'KznllmReviewDone',
    data = { id = r.id, bufnr = r.buf },
  })
end

--- While streaming: the diff of what came so far, when the buffer changed since the last.
local function refresh_stream(r)
  if r.complete or not api.nvim_buf_is_valid(r.buf) then
    return
  end
  local tick = api.nvim_buf_get_changedtick(r.buf)
  if tick == r.drawn_tick then
    return
  end
  r.drawn_tick = tick
  -- only the part not settled yet is read and diffed; an edit in the settled part (its
  -- edge line is not as the last pass left it) starts over from the region's start
  if (r.settled.j or 0) > 0 and settled_edge(r) ~= r.settled.edge then
    r.settled = {}
  end
  local hunks, pending, diffed = differ.stream(r.settled, r.old, function(from)
    return answer_lines(r, from)
  end)
  if not hunks then
    return
  end
  r.settled.edge = settled_edge(r)
  r.stream, r.pending, r.diffed = hunks, pending, diffed
  draw(r.buf)
end

--- Start reviewing job `id`: its answer spans (srow, scol)..(erow, ecol) of `buf` and
--- replaced `original`. The marks follow the answer as it grows at its end.
function M.open(id, buf, span_, original)
  local r = {
    id = id,
    buf = buf,
    original = original,
    old = vim.split(original, '\n', { plain = true }),
    hunks = {},
    stream = {},
    pending = {},
    settled = {}, -- review_diff.stream's state: the hunks no more text can move
    complete = false,
  }
  r.pending = vim.deepcopy(r.old)
  r.start = api.nvim_buf_set_extmark(buf, track, span_[1], span_[2], { right_gravity = false })
  r.stop = api.nvim_buf_set_extmark(buf, track, span_[3], span_[4], { right_gravity = true })
  M.reviews[id] = r
  map_keys(buf)
  refresh_stream(r)
  r.timer = vim.uv.new_timer()
  r.timer:start(
    REDRAW_MS,
    REDRAW_MS,
    vim.schedule_wrap(function()
      refresh_stream(r)
    end)
  )
  return r
end

-- After a change in a buffer under review: which hunks were undone or redone, then a
-- redraw (once per batch of changes).
local function recheck(buf)
  local any = false
  for _, r in ipairs(in_buffer(buf)) do
    any = true
    if r.complete then
      for _, h in ipairs(r.hunks) do
        local now = hunk_text(r, h)
        if h.state == 'rejected' and now == h.text then
          h.state = 'open' -- the reject was undone
        elseif h.state == 'open' and now == h.old_text then
          h.state = 'rejected' -- and redone
        end
      end
    end
  end
  if any then
    draw(buf)
  end
end

local function watch(buf)
  require('kznllm.job.watch').watch('review', buf, function(b)
    for _, r in pairs(M.reviews) do
      if r.buf == b and r.complete then
        return true
      end
    end
    return false
  end, recheck)
end

--- "gy/gb accept/reject, gY/gB all, ]h/[h move": the keys mapped in `buf`.
local function key_line(buf)
  local km, parts = mapped[buf] or {}, {}
  local function on(k)
    return km[k]
  end
  for _, x in ipairs({
    { 'accept', 'reject', 'accept/reject' },
    { 'accept_all', 'reject_all', 'all' },
    { 'next', 'prev', 'move' },
  }) do
    local a, b = on(x[1]), on(x[2])
    if a and b then
      table.insert(parts, ('%s/%s %s'):format(a, b, x[3]))
    elseif a or b then
      table.insert(parts, ('%s %s'):format(a or b, x[3]:match(a and '^[^/]+' or '[^/]+$')))
    end
  end
  if #parts == 0 then
    return ':KznAccept / :KznReject (! for all)'
  end
  return table.concat(parts, ', ')
end

--- Tell history that the answer of `entry` was rejected as a whole (the sidebar and
--- `kznllm history` show "rejected", not how the request ended).
function M.record_rejected(entry)
  if type(entry) == 'number' then
    pcall(require('kznllm.host').notify, 'history_review', { id = entry, status = 'rejected' })
  end
end

--- The answer is complete (or ended early: what came is what is reviewed). `quiet`:
--- the answer was undone or deleted, the review just ends. `entry`: its history entry.
--- `note`: the "partial output" mark of an answer that ended early (the job's namespace).
--- Returns the line that says what is to review and with which keys (the job's end
--- message carries it).
function M.complete(id, quiet, entry, note)
  local r = M.reviews[id]
  if not r or r.complete then
    return
  end
  r.entry = entry
  r.note = note
  stop_timer(r)
  local text = api.nvim_buf_is_valid(r.buf) and region_text(r) or nil
  if not text or quiet then
    return close(r)
  end
  r.complete = true
  local sr, sc = pos(r.buf, r.start)
  local er, ec = pos(r.buf, r.stop)
  local new = vim.split(text, '\n', { plain = true })
  local list = differ.hunks(r.old, new, false)
  if #list == 0 then
    close(r)
    return 'the answer is the same as the original: nothing to review'
  end
  -- the buffer position of the start of answer line j (0-based)
  local function line_start(j)
    if j == 0 then
      return sr, sc
    end
    return sr + j, 0
  end
  for _, d in ipairs(list) do
    local j, n = d.new_start, d.new_count
    local h = {
      old = d.old,
      count = n,
      kind = #d.old == 0 and 'add' or (n == 0 and 'delete' or 'change'),
      state = 'open',
    }
    local a_r, a_c, b_r, b_c, opts
    if j + n < #new then
      -- lines each followed by their line break
      a_r, a_c = line_start(j)
      b_r, b_c = line_start(j + n)
      h.text = n > 0 and table.concat(vim.list_slice(new, j + 1, j + n), '\n') .. '\n' or ''
      h.old_text = #d.old > 0 and table.concat(d.old, '\n') .. '\n' or ''
      opts = { right_gravity = false, end_right_gravity = n == 0 }
    elseif j > 0 then
      -- at the region's end: each line after a line break
      h.at_end = true
      a_r = sr + j - 1
      a_c = (j - 1 == 0 and sc or 0) + #new[j]
      b_r, b_c = er, ec
      h.text = n > 0 and '\n' .. table.concat(vim.list_slice(new, j + 1, j + n), '\n') or ''
      h.old_text = #d.old > 0 and '\n' .. table.concat(d.old, '\n') or ''
      opts = { right_gravity = n == 0 and false or true, end_right_gravity = true }
    else
      -- the whole region
      a_r, a_c, b_r, b_c = sr, sc, er, ec
      h.text = text
      h.old_text = table.concat(d.old, '\n')
      opts = { right_gravity = false, end_right_gravity = true }
    end
    opts.end_row, opts.end_col = b_r, b_c
    h.mark = api.nvim_buf_set_extmark(r.buf, track, a_r, a_c, opts)
    table.insert(r.hunks, h)
  end
  r.tick = api.nvim_buf_get_changedtick(r.buf)
  watch(r.buf)
  draw(r.buf)
  return ('%d hunk%s to review: %s'):format(#r.hunks, #r.hunks == 1 and '' or 's', key_line(r.buf))
end

--- From the host (or :KznApply), once it is complete. The diff is computed here.
function M.update(id, _, complete)
  if complete then
    local line = M.complete(id)
    if line then
      notify('kznllm: ' .. line)
    end
  end
end

--- Start an undo step for a reject of `r`: joins the answer's only when nothing came
--- between (the buffer is as the answer left it).
local function undo_step(r, first)
  undo.step(not first or api.nvim_buf_get_changedtick(r.buf) == r.tick)
end

--- Put hunk h's original text back: insert it, then remove the answer's, so that the
--- mark spans it and undo / redo restore both exactly.
local function reject(r, h, first)
  local sr, sc, er, ec = span(r, h)
  local lines = vim.split(h.old_text, '\n', { plain = true })
  api.nvim_buf_call(r.buf, function()
    undo_step(r, first)
    if h.at_end and h.count > 0 then
      api.nvim_buf_set_text(r.buf, er, ec, er, ec, lines)
      undo.step(true)
      api.nvim_buf_set_text(r.buf, sr, sc, er, ec, { '' })
    else
      api.nvim_buf_set_text(r.buf, sr, sc, sr, sc, lines)
      if h.count > 0 then
        local _, _, nr, nc = span(r, h)
        local tr, tc = sr + #lines - 1, (#lines == 1 and sc or 0) + #lines[#lines]
        undo.step(true)
        api.nvim_buf_set_text(r.buf, tr, tc, nr, nc, { '' })
      end
    end
  end)
  h.state = 'rejected'
  r.tick = -1 -- a later reject is a step of its own
end

local function edited(r, h)
  return hunk_text(r, h) ~= h.text
end

local function open_hunks(r)
  local n = 0
  for _, h in ipairs(r.hunks) do
    n = n + (h.state == 'open' and 1 or 0)
  end
  return n
end

local function done_if_decided(r)
  if open_hunks(r) == 0 then
    local rejected = true
    for _, h in ipairs(r.hunks) do
      rejected = rejected and h.state == 'rejected'
    end
    if rejected then
      M.record_rejected(r.entry)
      if r.note then -- no partial answer is left to mark: its note goes with it
        pcall(api.nvim_buf_del_extmark, r.buf, require('kznllm.job').ns, r.note)
      end
    end
    return close(r)
  end
  draw(r.buf)
end

--- The review and hunk under the cursor of the current window, if any.
local function at_cursor(buf)
  local row = api.nvim_win_get_cursor(0)[1] - 1
  for _, r in ipairs(in_buffer(buf)) do
    if r.complete then
      for k, h in ipairs(r.hunks) do
        if h.state == 'open' then
          local first, final = rows(r, h)
          if first and row >= first and row <= math.max(first, final) then
            return r, k
          end
        end
      end
    end
  end
  return nil
end

local REFUSE = 'kznllm: the hunk was edited: reject would drop your edit'
  .. ' (accept keeps it; u undoes the edit)'

--- :KznAccept[!] / :KznReject[!]: the hunk under the cursor, or with `all` the whole
--- answer of the review under the cursor (or the only one in the buffer).
function M.act(keep, all)
  local buf = api.nvim_get_current_buf()
  local r, k = at_cursor(buf)
  if all and not r then
    local list = in_buffer(buf)
    r = #list == 1 and list[1] or nil
    if not r then
      local row = api.nvim_win_get_cursor(0)[1] - 1
      for _, x in ipairs(list) do
        local s, e = pos(x.buf, x.start), pos(x.buf, x.stop)
        if s and row >= s and row <= e then
          r = x
        end
      end
    end
  end
  if not r then
    return notify('kznllm: no review hunk here', vim.log.levels.WARN)
  end
  if not r.complete then
    if not all then
      return notify('kznllm: the answer is still streaming', vim.log.levels.WARN)
    end
    if keep then
      return notify(
        'kznllm: the answer is still streaming (reject all cancels it)',
        vim.log.levels.WARN
      )
    end
    local job = require('kznllm.job')
    job.stop(r.id, 'cancelled', job.REJECTED)
    local sr, sc = pos(r.buf, r.start)
    local er, ec = pos(r.buf, r.stop)
    api.nvim_buf_call(r.buf, function()
      undo.step(true) -- the answer's step: one u is the original
      api.nvim_buf_set_text(r.buf, sr, sc, er, ec, r.old)
    end)
    return close(r)
  end
  if not all then
    local h = r.hunks[k]
    if not keep then
      if edited(r, h) then
        return notify(REFUSE, vim.log.levels.WARN)
      end
      reject(r, h, true)
    else
      h.state = 'accepted'
    end
    return done_if_decided(r)
  end
  local kept = 0
  local first = true
  for i = #r.hunks, 1, -1 do -- bottom up: each reject leaves the ones above in place
    local h = r.hunks[i]
    if h.state == 'open' then
      if keep then
        h.state = 'accepted'
      elseif edited(r, h) then
        kept = kept + 1
      else
        reject(r, h, first)
        first = false
      end
    end
  end
  if kept > 0 then
    notify(
      ('kznllm: %d edited hunk%s kept: accept, or undo the edit, to end the review'):format(
        kept,
        kept == 1 and '' or 's'
      ),
      vim.log.levels.WARN
    )
  end
  done_if_decided(r)
end

--- ]h / [h (next / prev): the cursor to the next / previous open hunk of the buffer's reviews.
function M.jump(dir)
  local buf = api.nvim_get_current_buf()
  local row = api.nvim_win_get_cursor(0)[1] - 1
  local targets = {}
  for _, r in ipairs(in_buffer(buf)) do
    for _, h in ipairs(r.complete and r.hunks or {}) do
      if h.state == 'open' then
        local first = rows(r, h)
        if first then
          table.insert(targets, math.min(first, api.nvim_buf_line_count(buf) - 1))
        end
      end
    end
  end
  table.sort(targets)
  local target
  for _, x in ipairs(targets) do
    if dir > 0 and x > row and not target then
      target = x
    elseif dir < 0 and x < row then
      target = x
    end
  end
  if target then
    api.nvim_win_set_cursor(0, { target + 1, 0 })
  end
end

function M.key(name)
  if name == 'next' then
    return M.jump(1)
  elseif name == 'prev' then
    return M.jump(-1)
  end
  M.act(name == 'accept' or name == 'accept_all', name == 'accept_all' or name == 'reject_all')
end

--- Whether job `id` is under review (its writes are drawn as a diff).
function M.active(id)
  return M.reviews[id] ~= nil
end

-- a buffer that is wiped or reloaded (:e!) ends its reviews
api.nvim_create_autocmd({ 'BufUnload', 'BufWipeout', 'BufReadPre' }, {
  group = api.nvim_create_augroup('kznllm_review', { clear = true }),
  callback = function(ev)
    for _, r in pairs(M.reviews) do
      if r.buf == ev.buf then
        close(r)
      end
    end
  end,
})

return M
