-- Commands exist without setup(); keymaps come with require('kznllm').setup().
if vim.g.loaded_kznllm then
  return
end
vim.g.loaded_kznllm = 1

local function k()
  return require('kznllm')
end

vim.api.nvim_create_user_command('KznFill', function(cmd)
  k().command_fill(cmd)
end, { nargs = '*', range = true, desc = 'kznllm: replace the range, or answer at the cursor' })

vim.api.nvim_create_user_command('KznDebug', function(cmd)
  k().command_fill(cmd, true)
end, {
  nargs = '*',
  range = true,
  desc = 'kznllm: show the request, then the answer, in a scratch buffer',
})

vim.api.nvim_create_user_command('KznContext', function(cmd)
  require('kznllm.context_view').show(cmd)
end, {
  nargs = '*',
  range = true,
  desc = 'kznllm: show what a fill here would send, section by section (nothing is sent)',
})

vim.api.nvim_create_user_command('KznReview', function(cmd)
  k().command_fill(cmd, false, { review = true })
end, {
  nargs = '*',
  range = true,
  desc = 'kznllm: replace the range, as a review (accept or reject each hunk)',
})

vim.api.nvim_create_user_command('KznAccept', function(cmd)
  require('kznllm.review').act(true, cmd.bang)
end, { bang = true, desc = 'kznllm: accept the hunk under the cursor (!: the whole answer)' })

vim.api.nvim_create_user_command('KznReject', function(cmd)
  require('kznllm.review').act(false, cmd.bang)
end, { bang = true, desc = 'kznllm: reject the hunk under the cursor (!: the whole answer)' })

vim.api.nvim_create_user_command('KznApply', function(cmd)
  k().apply(cmd.bang)
end, {
  bang = true,
  desc = 'kznllm: put this answer (debug view, history entry, re-run) in place of its code'
    .. ' (!: also one that did not finish)',
})

vim.api.nvim_create_user_command('KznSend', function()
  k().send()
end, { desc = 'kznllm: send the debug view request as edited; the answer streams below' })

vim.api.nvim_create_user_command('KznTrust', function()
  require('kznllm.trust').start()
end, { desc = "kznllm: review the project's templates and trust them (vim.secure)" })

vim.api.nvim_create_user_command('KznCancel', function()
  k().cancel()
end, { desc = 'kznllm: cancel what runs in this buffer (or clear partial-output marks)' })

vim.api.nvim_create_user_command('KznHistory', function(cmd)
  k().history(cmd.args)
end, {
  nargs = '?',
  complete = function()
    return { 'clear' }
  end,
  desc = 'kznllm: toggle the history sidebar (:KznHistory clear deletes every entry)',
})

vim.api.nvim_create_user_command('KznLog', function()
  require('kznllm.notify').show_log()
end, { desc = "kznllm: the plugin's last messages, whole" })

vim.api.nvim_create_user_command('KznPreset', function(cmd)
  k().select_preset(cmd.args, cmd.bang)
end, {
  nargs = '?',
  bang = true,
  complete = function(arglead)
    return k().complete_presets(arglead)
  end,
  desc = "kznllm: pick the preset (!: then its model, from the server's list)",
})
