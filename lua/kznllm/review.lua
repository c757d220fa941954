-- Review before keeping: while a replace streams, the buffer holds the answer as real
-- text and the lines it replaces show as virtual lines beside the hunks that changed;
-- when it is complete the review stays open until every hunk is accepted or rejected.
-- The host computes the hunks (kznllm_py/review.py) over the region only; this side
-- draws them and applies a choice to the buffer.
local M = {}

local api = vim.api
local ns = api.nvim_create_namespace('kznllm_review')
M.ns = ns

local config = require('kznllm.config')

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

---@class kznllm.Review
---@field id integer the job's id
---@field buf integer
---@field start integer extmark at the region's first byte
---@field stop integer extmark after the region's last byte
---@field original string the replaced text, byte for byte
---@field old string[] its lines
---@field hunks table[] from the host: { new_start, new_count, old_start, old, kind }
---@field decided (boolean|nil)[] per hunk: true accepted, false rejected, nil open
---@field pending string[] streaming: original lines the answer has not reached
---@field complete boolean
---@field saved table<string, table> the user's own buffer maps our keys hid

---@type table<integer, kznllm.Review>
M.reviews = {} -- by job id

local notify = require('kznllm.notify').notify

local function pos(r, id)
  local p = api.nvim_buf_get_extmark_by_id(r.buf, ns, id, {})
  return p[1], p[2]
end

local function in_buffer(buf)
  local out = {}
  for _, r in pairs(M.reviews) do
    if r.buf == buf then
      table.insert(out, r)
    end
  end
  table.sort(out, function(a, b)
    return (pos(a, a.start) or 0) < (pos(b, b.start) or 0)
  end)
  return out
end

--- The buffer row where hunk `k` starts now: the region's first row plus the lines of
--- the hunks before it as decided (a rejected hunk holds its original lines).
local function hunk_row(r, k)
  local row = pos(r, r.start)
  local shift = 0
  for i = 1, k - 1 do
    local h = r.hunks[i]
    if r.decided[i] == false then
      shift = shift + #h.old - h.new_count
    end
  end
  return row + r.hunks[k].new_start + shift
end

local function draw(r)
  if not api.nvim_buf_is_valid(r.buf) then
    return
  end
  local srow = pos(r, r.start)
  local erow = pos(r, r.stop)
  if not srow or not erow then
    return
  end
  for id in pairs(r.owned or {}) do
    api.nvim_buf_del_extmark(r.buf, ns, id)
  end
  r.owned = {}
  local last = api.nvim_buf_line_count(r.buf) - 1
  local function put(row, opts)
    local id = api.nvim_buf_set_extmark(r.buf, ns, math.min(row, last), 0, opts)
    r.owned[id] = true
  end
  for k, h in ipairs(r.hunks) do
    if r.decided[k] == nil then
      local row = hunk_row(r, k)
      if #h.old > 0 then
        local virt = {}
        for _, line in ipairs(h.old) do
          table.insert(virt, { { line, 'KznllmReviewDelete' } })
        end
        local below = row > erow or (h.new_count == 0 and row > last)
        put(below and erow or row, { virt_lines = virt, virt_lines_above = not below })
      end
      local group = h.kind == 'add' and 'KznllmReviewAdd' or 'KznllmReviewChange'
      for i = 0, h.new_count - 1 do
        if row + i <= last then
          put(row + i, { line_hl_group = group, priority = 150 })
        end
      end
    end
  end
  if not r.complete and #r.pending > 0 then
    local virt = {}
    for _, line in ipairs(r.pending) do
      table.insert(virt, { { line, 'KznllmReviewPending' } })
    end
    put(erow, { virt_lines = virt })
  end
end

-- keys ---------------------------------------------------------------------------------

local function map_keys(r)
  if r.mapped then
    return
  end
  r.mapped = true
  r.saved = {}
  for name, lhs in pairs(keys()) do
    if lhs and lhs ~= '' then
      local prev = vim.fn.maparg(lhs, 'n', false, true)
      if prev and prev.buffer == 1 then
        r.saved[lhs] = prev
      end
      vim.keymap.set('n', lhs, function()
        M.key(name)
      end, { buffer = r.buf, nowait = true, desc = 'kznllm review: ' .. name:gsub('_', ' ') })
    end
  end
end

local function unmap_keys(r)
  if not r.mapped or not api.nvim_buf_is_valid(r.buf) then
    return
  end
  for _, other in pairs(M.reviews) do
    if other ~= r and other.buf == r.buf and other.mapped then
      return -- another review in this buffer still uses them
    end
  end
  for _, lhs in pairs(keys()) do
    if lhs and lhs ~= '' then
      pcall(vim.keymap.del, 'n', lhs, { buffer = r.buf })
      if r.saved[lhs] then
        api.nvim_buf_call(r.buf, function()
          vim.fn.mapset('n', false, r.saved[lhs])
        end)
      end
    end
  end
end

-- the life of a review -----------------------------------------------------------------

local function close(r)
  M.reviews[r.id] = nil
  unmap_keys(r)
  if api.nvim_buf_is_valid(r.buf) then
    for id in pairs(r.owned or {}) do
      pcall(api.nvim_buf_del_extmark, r.buf, ns, id)
    end
    pcall(api.nvim_buf_del_extmark, r.buf, ns, r.start)
    pcall(api.nvim_buf_del_extmark, r.buf, ns, r.stop)
  end
  pcall(api.nvim_exec_autocmds, 'User', {
    pattern = 'KznllmReviewDone',
    data = { id = r.id, bufnr = r.buf },
  })
end

--- Start reviewing job `id`: its answer spans (srow, scol)..(erow, ecol) of `buf` and
--- replaced `original`. The marks follow the answer as it grows at its end.
function M.open(id, buf, span, original)
  local r = {
    id = id,
    buf = buf,
    original = original,
    old = vim.split(original, '\n', { plain = true }),
    hunks = {},
    decided = {},
    pending = {},
    complete = false,
  }
  r.start = api.nvim_buf_set_extmark(buf, ns, span[1], span[2], { right_gravity = false })
  r.stop = api.nvim_buf_set_extmark(buf, ns, span[3], span[4], { right_gravity = true })
  r.pending = vim.deepcopy(r.old)
  M.reviews[id] = r
  map_keys(r)
  draw(r)
  return r
end

--- From the host, while the answer streams and once more when it is complete.
function M.update(id, diff, complete)
  local r = M.reviews[id]
  if not r then
    return
  end
  r.hunks = diff.hunks or {}
  r.pending = diff.pending or {}
  r.complete = complete and true or false
  r.decided = {}
  if r.complete and #r.hunks == 0 then
    notify('kznllm: the answer is the same as the original: nothing to review')
    return close(r)
  end
  draw(r)
end

--- The region's text now.
local function region_text(r)
  local sr, sc = pos(r, r.start)
  local er, ec = pos(r, r.stop)
  return table.concat(api.nvim_buf_get_text(r.buf, sr, sc, er, ec, {}), '\n')
end

--- Replace the region's text, in the generation's undo step when nothing came between.
local function set_region(r, text)
  local sr, sc = pos(r, r.start)
  local er, ec = pos(r, r.stop)
  api.nvim_buf_call(r.buf, function()
    pcall(vim.cmd, 'undojoin')
    api.nvim_buf_set_text(r.buf, sr, sc, er, ec, vim.split(text, '\n', { plain = true }))
  end)
end

local function done_if_decided(r)
  for k = 1, #r.hunks do
    if r.decided[k] == nil then
      return draw(r)
    end
  end
  close(r)
end

--- Decide hunk k (true: keep the answer's lines, false: put the original's back).
local function decide(r, k, keep)
  if r.decided[k] ~= nil then
    return
  end
  if not keep then
    local h = r.hunks[k]
    local row = hunk_row(r, k)
    local srow = pos(r, r.start)
    local lines = vim.split(region_text(r), '\n', { plain = true })
    local at = row - srow + 1
    local new = {}
    for i = 1, at - 1 do
      new[#new + 1] = lines[i]
    end
    for _, line in ipairs(h.old) do
      new[#new + 1] = line
    end
    for i = at + h.new_count, #lines do
      new[#new + 1] = lines[i]
    end
    set_region(r, table.concat(new, '\n'))
  end
  r.decided[k] = keep
end

--- The review and hunk under the cursor of the current window, if any.
local function at_cursor(buf)
  local row = api.nvim_win_get_cursor(0)[1] - 1
  for _, r in ipairs(in_buffer(buf)) do
    for k, h in ipairs(r.hunks) do
      if r.decided[k] == nil then
        local first = hunk_row(r, k)
        if row >= first and row < first + math.max(h.new_count, 1) then
          return r, k
        end
      end
    end
  end
  return nil
end

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
        local s, e = pos(x, x.start), pos(x, x.stop)
        if row >= s and row <= e then
          r = x
        end
      end
    end
  end
  if not r then
    return notify('kznllm: no review hunk here', vim.log.levels.WARN)
  end
  if all then
    if not r.complete then
      if keep then
        return notify('kznllm: the answer is still streaming (gR rejects it)', vim.log.levels.WARN)
      end
      local job = require('kznllm.job')
      job.stop(r.id, 'cancelled', job.REJECTED)
    end
    if keep then
      close(r)
    else
      set_region(r, r.original)
      close(r)
    end
    return
  end
  if not r.complete then
    return notify('kznllm: the answer is still streaming', vim.log.levels.WARN)
  end
  decide(r, k, keep)
  done_if_decided(r)
end

--- ]c / [c: the cursor to the next / previous open hunk of the buffer's reviews.
function M.jump(dir)
  local buf = api.nvim_get_current_buf()
  local row = api.nvim_win_get_cursor(0)[1] - 1
  local rows = {}
  for _, r in ipairs(in_buffer(buf)) do
    for k = 1, #r.hunks do
      if r.decided[k] == nil then
        table.insert(rows, hunk_row(r, k))
      end
    end
  end
  table.sort(rows)
  local target
  for _, x in ipairs(rows) do
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
