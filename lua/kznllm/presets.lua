-- The preset in use and the :KznPreset picker: the choice (remembered across
-- restarts), the list the host keeps (its settings: host.configure), what it left out.
local M = {}

local notify = require('kznllm.notify').notify
local after_pick = require('kznllm.notify').after_pick
local config = require('kznllm.config')

local state_file = vim.fn.stdpath('data') .. '/kznllm/preset'
M.state = { preset = nil } -- the choice made with :KznPreset (saved), read once

local function read_saved_preset()
  local ok, lines = pcall(vim.fn.readfile, state_file)
  if ok and lines[1] and lines[1] ~= '' then
    return lines[1]
  end
  return false
end

--- The preset in use: the one picked with :KznPreset (remembered across restarts),
--- else setup()'s `preset`, else nil (the host picks the default).
function M.current_preset()
  if M.state.preset == nil then
    M.state.preset = read_saved_preset()
  end
  return M.state.preset or config.options.preset
end

M.PLACEMENTS = { auto = true, cursor = true, below = true, above = true, split = true, tab = true }

--- Where a normal-mode answer goes: the current preset's `placement`, else setup()'s.
function M.placement()
  local id = M.current_preset()
  for _, p in ipairs(config.options.presets or {}) do
    if type(p) == 'table' and p.id == id and p.placement and p.placement ~= '' then
      return p.placement
    end
  end
  return config.options.placement or 'auto'
end

local function save_preset(id)
  vim.fn.mkdir(vim.fn.fnamemodify(state_file, ':h'), 'p')
  vim.fn.writefile({ id }, state_file)
end

function M.presets()
  return require('kznllm.host').request('presets', { current = M.current_preset() or vim.NIL })
end

--- `pick_model` (`:KznPreset!`): then pick the preset's model from its server's list
--- (without `id`: the model of the preset in use).
function M.select_preset(id, pick_model)
  local ok, list = pcall(M.presets)
  if not ok then
    notify('kznllm: ' .. tostring(list), vim.log.levels.ERROR)
    return
  end
  local function choose(p, picked)
    local say = picked and after_pick or notify
    M.state.preset = p.id
    save_preset(p.id)
    require('kznllm.sidebar').changed() -- its context shows the preset
    if p.key_present == false then
      -- said now, not at the first fill's failure
      say(
        ('kznllm: set %s for preset %s: requests fail until then'):format(
          p.key:gsub('^%$', ''),
          p.id
        ),
        vim.log.levels.WARN
      )
    else
      local desc = (p.description or '') ~= '' and (' (%s)'):format(p.description) or ''
      say(('kznllm: preset %s%s'):format(p.id, desc), vim.log.levels.INFO)
    end
    if pick_model then
      if picked then -- the model list opens once the screen is redrawn
        vim.schedule(function()
          require('kznllm.models').pick(p)
        end)
      else
        require('kznllm.models').pick(p)
      end
    end
  end
  if pick_model and (not id or id == '') then
    id = list.current
  end
  local problems = list.problems or {}
  if id and id ~= '' then
    for _, p in ipairs(list.presets) do
      if p.id == id then
        return choose(p)
      end
    end
    for _, why in ipairs(problems) do -- one of setup()'s, left out: say why
      if why:find(("preset '%s'"):format(id), 1, true) then
        return notify(('kznllm: preset %s was left out: %s'):format(id, why), vim.log.levels.ERROR)
      end
    end
    notify(('kznllm: unknown preset %q'):format(id), vim.log.levels.ERROR)
    return
  end
  -- the picker lists what works; what was left out, and why, is said beside it (one
  -- line: :KznLog has each whole)
  if #problems > 0 then
    notify('kznllm: left out: ' .. table.concat(problems, '\n'), vim.log.levels.WARN)
  end
  vim.ui.select(list.presets, {
    prompt = #problems > 0 and ('kznllm preset (%d left out, see :KznLog)'):format(#problems)
      or 'kznllm preset',
    format_item = function(p)
      local key = p.key_present == false and ('  (no ' .. p.key .. ')') or ''
      local desc = (p.description or '') ~= '' and (' — ' .. p.description) or ''
      return (p.id == list.current and '● ' or '  ') .. p.id .. desc .. key
    end,
  }, function(p)
    if p then
      choose(p, true)
    end
  end)
end

function M.complete_presets(arglead)
  local ok, list = pcall(M.presets)
  if not ok then
    return {}
  end
  local out = {}
  for _, p in ipairs(list.presets) do
    if vim.startswith(p.id, arglead) then
      table.insert(out, p.id)
    end
  end
  return out
end

return M
