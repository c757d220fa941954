-- Why a fill cannot start, said at the keypress, before the query prompt opens: a query
-- is never typed into a prompt whose answer is then refused. Only what the editor knows
-- now, without a network call or a blocking request: the buffer's options, and the
-- host's last word on the presets (host.known: the env var of a key it lacks; a `cmd:`
-- key is never run here, it runs when used).
local M = {}

--- Why `buf` cannot take an answer, or nil.
function M.unwritable(buf)
  if vim.bo[buf].buftype == 'terminal' then
    return 'a terminal buffer cannot take an answer'
  end
  if not vim.bo[buf].modifiable then
    return "this buffer cannot take an answer ('modifiable' is off)"
  end
  return nil
end

--- Why `preset` (nil: the host's default) cannot be used, or nil: its key is missing.
--- Before the host has said (its first start, or since the last setup()), nothing is
--- known: the host says it then.
function M.missing_key(preset)
  local known = require('kznllm.host').known
  -- only the host's word on the settings in force: right after a setup() its reply to
  -- the new settings may not have come yet (then the host says it when the fill comes)
  if not known or known.generation ~= require('kznllm.config').generation then
    return nil
  end
  local id = preset or known.default
  local p = known.presets[id or '']
  local name = p and p.missing_key
  if type(name) ~= 'string' or name == '' then
    return nil
  end
  return ('set %s for preset %s: its API key is missing (or :KznPreset another)'):format(name, id)
end

--- Why a fill with `spec` cannot start in `buf`, or nil; `to_scratch`: the answer goes
--- to a scratch buffer (the debug view, a split), not into `buf`.
function M.before_prompt(buf, spec, to_scratch)
  local why = not to_scratch and M.unwritable(buf)
  if why then
    return why .. '; nothing was sent'
  end
  return M.missing_key(spec.preset or require('kznllm.presets').current_preset())
end

return M
