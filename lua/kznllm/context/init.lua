-- What the model is shown beside the selection, gathered at the keypress: each source
-- (a module of this folder) collects what the editor knows (diagnostics, the enclosing
-- scope, the outline, the language servers' definitions) for the range, at once or later;
-- the fill goes out when every source has answered or `lsp_timeout` ms after the
-- keypress, whichever comes first, with what answered by then. The deadline bounds only
-- the wait for the fill: what answers while the query is still being typed is used, so a
-- source may keep going past it (returning a `stop` from collect) until the fill goes out,
-- or until the prompt is left with nothing. The host types, bounds,
-- budgets and words it all (kznllm_py/prompt/sources/, kznllm_py/prompt/sections.py).
local M = {}

local config = require('kznllm.config')

-- source name -> { switch = setup()'s `context` key that turns it on, module = its module }
M.SOURCES = {
  diagnostics = { switch = 'diagnostics', module = 'kznllm.context.diagnostics' },
  git = { switch = 'git', module = 'kznllm.context.git' },
  definitions = { switch = 'lsp', module = 'kznllm.context.definitions' },
  scope = { switch = 'scope', module = 'kznllm.context.scope' },
  outline = { switch = 'outline', module = 'kznllm.context.outline' },
}

--- The options in force for a fill with `preset` (nil: the current one): the host's
--- word once it has answered the configure of the settings in force (setup()'s
--- `context` with the preset's own over it), else setup()'s; nil when it is false.
local function options(preset)
  local o = config.options.context
  local known = package.loaded['kznllm.host'] and package.loaded['kznllm.host'].known
  if known and known.generation ~= config.generation then
    known = nil -- the host's word on older settings: a setup() since is not in it yet
  end
  local id = preset or require('kznllm.presets').current_preset() or (known and known.default)
  local p = known and known.presets[id]
  if p and type(p.context) == 'table' then
    o = p.context
  else -- no host yet (or not its word on these settings): the preset of setup() by that id
    for _, q in ipairs(config.options.presets or {}) do
      if type(q) == 'table' and q.id == id and q.context ~= nil then
        o = q.context ~= false
          and vim.tbl_extend('force', type(o) == 'table' and o or {}, q.context)
      end
    end
  end
  if type(o) ~= 'table' then
    return nil
  end
  -- the lines the editor sends each side of the range (the outline leaves out theirs)
  return vim.tbl_extend('force', o, { around = config.options.context_lines })
end

--- Start gathering for `buf` and `range` ({ srow, scol, erow, ecol }, 0-based, end
--- exclusive) now, in the keypress's tick, for a fill with `preset` (nil: the current
--- one). Returns the pending gathering, or nil when every source is off.
function M.start(buf, range, preset)
  local o = options(preset)
  if not o then
    return nil
  end
  local pending = {
    facts = { notes = {} },
    asked = {}, -- source name -> true
    answered = {}, -- source name -> true
    stops = {}, -- source name -> stop(): answer now with what it has (collect's return)
    waiting = 0,
    started = vim.uv.now(),
    timeout = tonumber(o.lsp_timeout) or 300,
    done = nil, -- set by M.finish: called once with the facts
  }
  for name, source in pairs(M.SOURCES) do
    if o[source.switch] ~= false then
      pending.asked[name] = true
      pending.waiting = pending.waiting + 1
      local answered = false
      local function answer(value)
        if answered then
          return
        end
        answered = true
        pending.answered[name] = true
        pending.facts[name] = value
        pending.waiting = pending.waiting - 1
        if pending.waiting == 0 and pending.done then
          pending.done()
        end
      end
      local ok, err = pcall(function()
        local stop = require(source.module).collect(buf, range, o, answer)
        if type(stop) == 'function' and not answered then
          pending.stops[name] = stop
        end
      end)
      if not ok then
        table.insert(pending.facts.notes, ('%s: %s'):format(name, tostring(err)))
        answer(nil)
      end
    end
  end
  return pending
end

-- Ask every source still working to answer now with what it has (its stop), at once.
local function stop_all(pending)
  for name, stop in pairs(pending.stops) do
    pending.stops[name] = nil
    if not pending.answered[name] then
      pcall(stop)
    end
  end
end

--- The gathering is not needed (the query prompt was left empty): sources stop working.
function M.drop(pending)
  if pending then
    pending.done = nil
    stop_all(pending)
  end
end

--- The host's answer for a source it gathers (`source`: a name of SOURCES whose module
--- has `answered(reply)`, e.g. git), called through kznllm.calls.
function M.answered(source, reply)
  local s = M.SOURCES[source]
  if s then
    require(s.module).answered(reply)
  end
end

--- Call `cb(facts)` once: at once when every source has answered (returning what `cb`
--- returns), else when the last one does or the deadline (`lsp_timeout` ms from the
--- keypress) passes, whichever is first; a late answer is dropped and said in the notes.
function M.finish(pending, cb)
  local fired = false
  local timer
  local function fire()
    if fired then
      return
    end
    fired = true
    if timer then
      timer:stop()
      timer:close()
    end
    pending.done = nil
    stop_all(pending) -- a source that keeps going answers now, with what it has
    local facts = pending.facts
    if pending.waiting > 0 then
      local late = {}
      for name in pairs(pending.asked) do
        if not pending.answered[name] then
          table.insert(late, name)
        end
      end
      table.sort(late)
      table.insert(
        facts.notes,
        ('not in by the %d ms deadline (context.lsp_timeout): %s'):format(
          pending.timeout,
          table.concat(late, ', ')
        )
      )
    end
    return cb(facts)
  end
  if pending.waiting == 0 then
    return fire()
  end
  pending.done = vim.schedule_wrap(fire)
  local left = pending.timeout - (vim.uv.now() - pending.started)
  if left <= 0 then
    return fire()
  end
  timer = vim.uv.new_timer()
  timer:start(left, 0, vim.schedule_wrap(fire))
end

return M
