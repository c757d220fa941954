-- The options, with their defaults. Requires nothing: every other module reads its
-- options here, and setup() (in init.lua) is the only writer.
local M = {}

---@class kznllm.Keymaps
---@field fill string|false
---@field debug string|false
---@field preset string|false
---@field history string|false
---@field operator string|false
---@field cancel string|false
---@field review table<string, string|false>|false

---@class kznllm.Sidebar
---@field width number a fraction of the screen (< 1) or columns
---@field min_width integer
---@field max_width integer
---@field side 'right'|'left'
---@field keys table<string, string|false>

---@class kznllm.Options
---@field python string|nil
---@field preset string|nil
---@field presets table[]
---@field keymaps kznllm.Keymaps|false
---@field timeouts { connect: number, stall: number, total: number|false?, reused: number?, first_token: number|false? }
---@field progress boolean|{ message: fun(info: table): string }
---@field context_lines integer
---@field history boolean|table
---@field sidebar kznllm.Sidebar
---@field log { level: string }
---@field placement string
---@field review boolean
---@field shape boolean
---@field watchdog { cancel: number, silence: number, startup: number }
---@field retries integer
---@field max_response_bytes integer
---@field notify_done boolean|nil
---@field notify 'all'|'errors'|false
---@field kzn_allow string[]
---@field stream_highlight { mode: 'pause'|'live', quiet_ms: integer }
---@field prestart boolean
---@field context { budget: integer, lsp_timeout: integer, scope: boolean, outline: boolean, lsp: boolean, diagnostics: boolean, rules: boolean, git: boolean }|false

---@type kznllm.Options
M.defaults = {
  python = nil, -- Python for the host (default: <plugin>/.venv/bin/python, g:python3_host_prog, python3)
  -- starting preset; a :KznPreset choice (remembered) wins; nil: first with a key, else demo
  preset = nil,
  presets = {}, -- user presets: { id, description, provider, base_url, api_key, model, params }
  -- false turns all off, or one key at a time
  keymaps = {
    fill = '<leader>k',
    debug = '<leader>K',
    preset = '<leader>m',
    history = '<leader>h',
    operator = 'gz', -- gz{motion}: replace what the motion covers; gzz: the line(s)
    cancel = '<Esc>',
    -- while a review is open, in its buffer: keys no built-in command or default map
    -- uses (a key mapped already, or the start of a longer map, is left alone)
    review = {
      accept = 'gy',
      reject = 'gb',
      accept_all = 'gY',
      reject_all = 'gB',
      next = ']h',
      prev = '[h',
    },
  },
  timeouts = { connect = 10, stall = 60 }, -- seconds
  -- fidget.nvim when installed, else virtual text by the insertion point; false: off;
  -- { message = function(info) return string end } words it (:help kznllm-progress)
  progress = true,
  context_lines = 400, -- buffer lines sent each side of the selection / cursor
  -- what the model is shown beside the selection, each a labelled section
  -- (:help kznllm-context); false: only the lines around it. `budget`: tokens for all of
  -- it, the selection first (never cut), then the sections, then the lines around
  context = {
    budget = 16000,
    scope = true, -- the enclosing function, method or class (tree-sitter)
    outline = true, -- the file's top-level declarations (tree-sitter)
    lsp = true, -- the definitions of the names used, from the attached language servers
    lsp_timeout = 300, -- ms from the keypress: what the servers answered by then is sent
    diagnostics = true, -- vim.diagnostic entries on and near the selection
    rules = true, -- the project's AGENTS.md, CLAUDE.md, ... once trusted (:KznTrust)
    git = false, -- the file's uncommitted hunks near the selection
  },
  -- record every request in stdpath('data')/kznllm/history.sqlite3; or a table
  -- { enabled = true, max_entries = 10000, max_age_days = nil }
  history = true,
  -- :KznHistory (:help kznllm-sidebar): width is a fraction of the screen's columns (< 1)
  -- or a number of columns, kept within [min_width, max_width]
  sidebar = {
    width = 0.4,
    min_width = 30,
    max_width = 80,
    side = 'right', -- or 'left'
    -- { open = '<CR>', rerun = 'r', yank = 'y', put = 'p', delete = 'dd', undo = 'u',
    -- filter = 'f', close = 'q', help = '?' } by default (the host's, with its help
    -- lines: kznllm_py/history/view.py); a key here replaces one, false turns it off
    keys = {},
  },
  -- the host's log, stdpath('log')/kznllm.log: 'debug' | 'info' | 'warn' | 'error' | 'off'
  log = { level = 'info' },
  -- where a normal-mode answer goes: 'auto' (on a blank line: there; else on a new line
  -- below; a fill-in-the-middle preset: at the cursor), 'cursor', 'below', 'above',
  -- 'split' or 'tab' (a scratch buffer); a preset's own `placement` wins
  placement = 'auto',
  -- every replace is a review (:help kznllm-review): the answer streams in as real text,
  -- the lines it replaces show beside it, gy / gb / gY / gB accept or reject
  review = false,
  -- an answer at the cursor of a code buffer lands as code for it (:help kznllm-shape):
  -- fences out, prose as comments, indented where it goes; a replace keeps its indent
  shape = true,
  -- seconds: a cancel the host does not answer within `cancel`, or no word from it for
  -- `silence` while a request runs, ends the request in the editor (:help kznllm-watchdog)
  watchdog = { cancel = 1, silence = 5, startup = 30 },
  retries = 3, -- tries for a request turned away (429, 503, 529), before its first token
  max_response_bytes = 1048576, -- answer + reasoning past this many bytes: stopped, kept
  -- messages: 'all'; 'errors' (warnings and errors only); false (errors only). With
  -- Neovim's own vim.notify each takes one line (the host's log has the whole text)
  notify = 'all',
  -- .kzn folders (or their projects) used even when another user owns them or every
  -- user can write to them (git's safe.directory); '*' trusts every one
  kzn_allow = {},
  -- a treesitter-highlighted buffer: 'pause' keeps its highlighting as it was while an
  -- answer streams in (the code around it keeps its colours) and highlights the answer
  -- when the stream pauses for quiet_ms or ends, so that a fast stream does not re-parse
  -- the buffer at every write; 'live' re-parses at every write
  stream_highlight = { mode = 'pause', quiet_ms = 150 },
  -- start the Python host the first time Neovim is idle ('updatetime' without a key:
  -- CursorHold), so that the first fill is as fast as the next; false: at first use
  prestart = true,
}

---@type kznllm.Options
-- the defaults themselves until setup(): vim.tbl_deep_extend never changes the tables
-- it merges (it makes new ones), and nothing writes into the options in place, so no
-- copy is needed (a deepcopy here was an eighth of what setup() adds to startup)
M.options = M.defaults

-- setup() calls so far: the host answers a configure with the one it got
M.generation = 0

--- Merge `opts` over the options in force (a list of presets replaces the old one).
---@return kznllm.Options
function M.set(opts)
  M.generation = M.generation + 1
  M.options = vim.tbl_deep_extend('force', M.options, opts or {})
  if opts and opts.presets then
    M.options.presets = opts.presets -- a list: replace, do not merge by index
  end
  return M.options
end

return M
