-- What the host calls in the editor, by name: the one table of the Python -> Lua
-- protocol (kznllm_py's Editor facade names the same, and only it). Each handler
-- requires its module when first called, so this table costs nothing at startup.
local function to(module, fn)
  local name = 'kznllm.' .. module
  return function(...)
    return require(name)[fn](...)
  end
end

return {
  -- the host's channel: answers, liveness, what configure resolved
  ['host.reply'] = to('host', 'reply'),
  ['host.pong'] = to('host', 'pong'),
  ['host.configured'] = to('host', 'configured'),
  -- a job: its text, notes, the end (the typed end record's keys), its history entry
  ['job.write'] = to('job', 'write'),
  ['job.note'] = to('job', 'note'),
  ['job.rewrite'] = to('job', 'rewrite'),
  ['job.finish'] = to('job', 'finish'),
  ['job.entry'] = to('job', 'entry'),
  ['actions.spent'] = to('actions', 'spent'),
  -- the history sidebar
  ['sidebar.render'] = to('sidebar', 'render'),
  ['sidebar.entry'] = to('sidebar', 'entry'),
  ['sidebar.changed'] = to('sidebar', 'changed'),
  ['sidebar.undeleted'] = to('sidebar', 'undeleted'),
  ['sidebar.cleared'] = to('sidebar', 'cleared'),
  -- :KznApply, :KznPreset!, :KznTrust
  ['apply.planned'] = to('apply', 'planned'),
  ['apply.located'] = to('apply', 'located'),
  ['apply.refused'] = to('apply', 'refused'),
  ['models.listed'] = to('models', 'listed'),
  ['trust.review'] = to('trust', 'review'),
  -- a context source the host gathers (git), answering the keypress's gathering
  ['context.answered'] = to('context', 'answered'),
  ['context_view.shown'] = to('context_view', 'shown'), -- :KznContext
  -- every message, by its level's name
  notify = function(msg, level)
    return require('kznllm.notify').notify(msg, vim.log.levels[level] or vim.log.levels.INFO)
  end,
}
