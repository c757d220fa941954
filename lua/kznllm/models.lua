-- The model of a preset, picked from the list its server offers (`:KznPreset!`): the
-- host fetches the list (off the editor: a notification out, a call back in), the
-- choice is remembered per preset across restarts and goes to the host with the settings.
local M = {}

local notify = require('kznllm.notify').notify

local state_file = vim.fn.stdpath('data') .. '/kznllm/models.json'
M.chosen = nil -- { [preset id] = model }, read once
M.pending = {} -- request number -> { preset = preset, typed = keys typed since asking }
M.next_id = 0
-- preset id -> the models its server listed while the user typed: the next ask offers
-- them at once (once: a later ask fetches the list again)
M.listing = {}
local keys_ns = vim.api.nvim_create_namespace('kznllm.models.keys')

-- the providers whose servers do not list their models (every other one does: each
-- provider module declares its list, and the host says why when a list cannot be had)
M.unlisted = { azure = true }

local function read()
  local ok, lines = pcall(vim.fn.readfile, state_file)
  local decoded = ok and #lines > 0 and vim.json.decode(table.concat(lines, '\n')) or nil
  return type(decoded) == 'table' and decoded or {}
end

--- { [preset id] = model } of the models picked so far.
function M.overrides()
  if M.chosen == nil then
    M.chosen = read()
  end
  return M.chosen
end

function M.set(preset_id, model)
  local chosen = M.overrides()
  chosen[preset_id] = model
  vim.fn.mkdir(vim.fn.fnamemodify(state_file, ':h'), 'p')
  vim.fn.writefile({ vim.json.encode(chosen) }, state_file)
  require('kznllm.host').configure() -- the host keeps them with the settings
end

--- Ask the host for `preset`'s models, then let the user pick one.
function M.pick(preset)
  if M.unlisted[preset.provider] then
    notify(
      ('kznllm: preset %s (%s) does not list its models here; set its model in setup()'):format(
        preset.id,
        preset.provider
      ),
      vim.log.levels.WARN
    )
    return
  end
  local listed = M.listing[preset.id]
  if listed then
    M.listing[preset.id] = nil
    return M.offer(preset, listed)
  end
  M.next_id = M.next_id + 1
  local asked = { preset = preset, typed = 0 }
  M.pending[M.next_id] = asked
  -- the list comes back later: a picker that opened while the user types would take
  -- their keys, so keys typed meanwhile are counted and the picker waits for the next ask
  vim.on_key(function(_, typed)
    if typed and typed ~= '' then
      for _, p in pairs(M.pending) do
        p.typed = p.typed + 1
      end
    end
  end, keys_ns)
  require('kznllm.host').notify('models', { request = M.next_id, preset = preset.id })
end

--- The picker of `models` for `preset`.
function M.offer(preset, models)
  local current = M.overrides()[preset.id] or preset.model
  vim.ui.select(models, {
    prompt = ('kznllm model for %s'):format(preset.id),
    format_item = function(m)
      return (m == current and '● ' or '  ') .. m
    end,
  }, function(model)
    if model then
      M.set(preset.id, model)
      require('kznllm.sidebar').changed()
      local say = require('kznllm.notify').after_pick -- the screen is redrawn first
      say(('kznllm: preset %s now uses %s'):format(preset.id, model), vim.log.levels.INFO)
    end
  end)
end

--- Called by the host: { request, models = {...} } or { request, error }.
function M.listed(result)
  local asked = M.pending[result.request]
  M.pending[result.request] = nil
  if next(M.pending) == nil then
    vim.on_key(nil, keys_ns)
  end
  if not asked then
    return
  end
  local preset = asked.preset
  if result.error then
    notify('kznllm: ' .. result.error, vim.log.levels.ERROR)
    return
  end
  if #result.models == 0 then
    notify(('kznllm: the server of %s lists no models'):format(preset.id), vim.log.levels.WARN)
    return
  end
  local mode = vim.api.nvim_get_mode()
  if asked.typed > 0 or mode.blocking or mode.mode ~= 'n' then
    M.listing[preset.id] = result.models
    return notify(
      ('kznllm: %d models of %s listed (not opened while you typed): :KznPreset! picks one'):format(
        #result.models,
        preset.id
      )
    )
  end
  M.offer(preset, result.models)
end

return M
