-- The "partial output" note goes with the text it marks: once undo takes that text back
-- (the buffer's undo state is before the answer's step), the note goes too. A redo does
-- not bring it back: the text is then plainly the answer's, in the history.
local M = {}

local api = vim.api

--- Delete extmark `id` of namespace `ns` in `buf` once undo goes back before change
--- number `seq` (the answer's undo step); forget it once the mark is gone otherwise
--- (the next fill, :KznCancel with nothing running) or the buffer is.
function M.until_undone(buf, ns, id, seq)
  if not seq or seq <= 0 then
    return
  end
  local group = api.nvim_create_augroup(('kznllm_partial_%d_%d'):format(buf, id), {})
  api.nvim_create_autocmd({ 'TextChanged', 'TextChangedI', 'BufWipeout' }, {
    group = group,
    buffer = buf,
    callback = function(ev)
      local ok, pos = pcall(api.nvim_buf_get_extmark_by_id, buf, ns, id, {})
      local gone = ev.event == 'BufWipeout' or not ok or not pos[1]
      if gone or vim.fn.undotree(buf).seq_cur < seq then
        pcall(api.nvim_buf_del_extmark, buf, ns, id)
        pcall(api.nvim_del_augroup_by_id, group)
      end
    end,
  })
end

return M
