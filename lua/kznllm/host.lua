-- The Python host: started lazily (on first use, without blocking the editor), one
-- process of our own running the remote plugin in rplugin/python3/kznllm.py.
local M = {}

-- what a host that cannot import its dependencies needs (README's build step)
local BUILD_FIX = "run the build step in the plugin's folder (python3 -m venv .venv &&"
  .. ' .venv/bin/pip install .), or set setup({ python = ... }); :checkhealth kznllm'

local root = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h:h:h')
M.plugin_path = root .. '/rplugin/python3/kznllm.py'
local method = M.plugin_path .. ':function:KznllmHostCall'

M.chan = nil
M.pid = nil
local config = require('kznllm.config')
local notify = require('kznllm.notify').notify

local killed = {} -- channels of hosts the watchdog killed: their exit is no news
local heard_at -- vim.uv.hrtime() of the host's last word (nil: not yet since it started)
local started_at
local ping_timer

--- The watchdog, in seconds: a cancel not answered within `cancel`, or no word from
--- the host for `silence` while a request runs (`startup` before its first word), ends
--- the requests in the editor and the host with them (setup({ watchdog = { ... } })).
function M.limits()
  return vim.tbl_extend('force', config.defaults.watchdog, config.options.watchdog or {})
end

--- Any word from the host (a write, a note, the end of a job, a pong) shows it alive.
function M.heard()
  heard_at = vim.uv.hrtime()
end

function M.pong()
  M.heard()
end

--- Has the running host said a word since it started?
function M.alive()
  return M.chan ~= nil and heard_at ~= nil
end

local function find_python()
  local candidates = {
    config.options.python,
    vim.env.KZNLLM_PYTHON,
    root .. '/.venv/bin/python',
    vim.g.python3_host_prog,
    'python3',
  }
  for i = 1, 5 do -- not ipairs: it would stop at the first unset (nil) candidate
    local p = candidates[i]
    if p and p ~= '' and vim.fn.executable(vim.fn.expand(p)) == 1 then
      return vim.fn.expand(p)
    end
  end
  return nil
end

M.find_python = find_python
M.root = root

-- the problems of the config already said (setup()'s generation, and their text): a
-- bad preset is said once, whether the check at setup() or the host says it first
local reported = { generation = -1, lines = {} }

--- Say each of `problems` (field and reason) not said yet for setup() call `generation`.
function M.report(generation, problems)
  if generation ~= config.generation then
    return -- an older setup()'s: the newer one is checked on its own
  end
  if reported.generation ~= generation then
    reported.generation, reported.lines = generation, {}
  end
  local new = {}
  for _, p in ipairs(problems or {}) do
    if not reported.lines[p] then
      reported.lines[p] = true
      table.insert(new, p)
    end
  end
  if #new > 0 then
    -- one message, however many: two lines at startup would ask for ENTER (:KznLog has
    -- each whole)
    notify('kznllm: ' .. table.concat(new, '\n'), vim.log.levels.ERROR)
  end
end

-- the options the host validates and keeps (kznllm_py/settings.py)
local SETTINGS =
  { 'presets', 'history', 'timeouts', 'retries', 'max_response_bytes', 'kzn_allow', 'context' }

--- What the host keeps until the next setup(): the options (validated there once),
--- the models picked per preset and where history, the log and presets.toml live.
function M.settings()
  local o = config.options
  local s = {
    generation = config.generation,
    models = require('kznllm.models').overrides(), -- picked with :KznPreset!
    data_dir = vim.fn.stdpath('data'),
    config_dir = vim.fn.stdpath('config'),
    state_dir = vim.fn.stdpath('state'), -- the trust database (:trust, :KznTrust)
    log_dir = vim.fn.stdpath('log'),
    log_level = (o.log or {}).level or 'info',
  }
  for _, name in ipairs(SETTINGS) do
    s[name] = o[name]
  end
  s.shape = o.shape -- answers shaped for their file (kznllm_py/fill/shape.py)
  return s
end

-- what the host resolved from the settings in force: { default = preset id, presets =
-- { [id] = { model, auto = where 'auto' puts an answer } } } (nil until it has said)
M.known = nil

--- From the host: the settings of `reply.generation` are in force.
function M.configured(reply)
  M.heard()
  M.known =
    { default = reply.default, presets = reply.presets or {}, generation = reply.generation }
  M.report(reply.generation, reply.problems)
end

--- Send the settings to the running host (setup() again, a model picked); a host
--- started later gets them first thing (ensure()).
function M.configure()
  if M.chan then
    vim.rpcnotify(M.chan, method, { 'configure', M.settings() })
  end
end

--- Validate user presets at setup, in a short-lived process (the host stays lazy);
--- what it finds is said through report().
function M.check_presets(presets)
  local python = find_python()
  if not python then
    return
  end
  local generation = config.generation
  local code = ('import sys; sys.path.insert(0, %q); from kznllm_py.cli.main import main; '):format(
    root
  ) .. "sys.exit(main(['presets', '--check', '-', '--json']))"
  local ok = pcall(
    vim.system,
    { python, '-c', code },
    { stdin = vim.json.encode(presets), text = true },
    function(res)
      local decoded = res.stdout
        and pcall(vim.json.decode, res.stdout)
        and vim.json.decode(res.stdout)
      local problems = decoded and decoded.problems or nil
      if res.code ~= 0 and not problems then
        problems = { 'could not check the presets: ' .. vim.trim(res.stderr or '') }
      end
      if problems and #problems > 0 then
        vim.schedule(function()
          M.report(generation, problems)
        end)
      end
    end
  )
  return ok
end

function M.ensure()
  if M.chan then
    return M.chan
  end
  local python = find_python()
  if not python then
    error('kznllm: no Python found for the host (set setup({ python = ... }))', 0)
  end
  local stderr, open_line = {}, ''
  local argv = {
    python,
    '-c',
    -- after the loop (Neovim gone): running fills end as cancelled, history is flushed
    'import sys; sys.path = [p for p in sys.path if p != ""]; import pynvim\n'
      .. 'try:\n    pynvim.start_host()\nfinally:\n'
      .. '    p = sys.modules.get("kznllm_py.nvim.plugin")\n    p and p.shutdown()',
    M.plugin_path,
  }
  local chan = vim.fn.jobstart(argv, {
    rpc = true,
    on_stderr = function(_, data)
      -- the last lines only (a chatty host runs for hours), whole: a chunk's first item
      -- continues the line the chunk before left open (:help channel-lines)
      data = data or { '' }
      data[1] = open_line .. data[1]
      open_line = data[#data]:sub(1, 4096)
      for i = 1, #data - 1 do
        if data[i] ~= '' then
          table.insert(stderr, data[i]:sub(1, 4096))
          if #stderr > 6 then
            table.remove(stderr, 1)
          end
        end
      end
    end,
    on_exit = function(id, code)
      if killed[id] then
        killed[id] = nil
        return
      end
      if M.chan == id then
        M.chan, M.pid = nil, nil
      end
      if code ~= 0 and vim.v.exiting == vim.NIL then
        if open_line ~= '' then
          table.insert(stderr, open_line)
        end
        local why = table.concat(vim.list_slice(stderr, math.max(1, #stderr - 5)), '\n')
        -- a Python without the dependencies (the build step never ran): the fix first
        local missing = why:match("ModuleNotFoundError: No module named '([%w_%.]+)'")
        local msg = missing
            and ("kznllm: %s has no module '%s': %s\n%s"):format(python, missing, BUILD_FIX, why)
          or ('kznllm: the Python host (%s) exited with code %d. %s\nRun :checkhealth kznllm'):format(
            python,
            code,
            why
          )
        vim.schedule(function()
          notify(msg, vim.log.levels.ERROR)
          require('kznllm.job').host_died(id)
        end)
      elseif vim.v.exiting == vim.NIL then
        -- a clean exit still ends what ran there
        vim.schedule(function()
          require('kznllm.job').host_died(id)
        end)
      end
    end,
  })
  if chan <= 0 then
    error(('kznllm: could not start the Python host %s'):format(python), 0)
  end
  M.chan = chan
  M.pid = vim.fn.jobpid(chan)
  started_at, heard_at = vim.uv.hrtime(), nil
  -- the settings first: every other call on this channel runs with them
  vim.rpcnotify(chan, method, { 'configure', M.settings() })
  -- build the HTTP client and compile the templates while the user types the query
  vim.rpcnotify(chan, method, { 'warmup', vim.empty_dict() })
  return chan
end

--- Start the host ahead of its first use (Neovim is idle: setup()'s CursorHold), so
--- that the first fill does not wait for Python; quietly nothing when there is no
--- Python or the host does not start: the first use says why, as without this.
function M.prestart()
  if not M.chan and find_python() then
    pcall(M.ensure)
  end
end

--- The watchdog found the host on `chan` wedged (`why`): kill it (SIGKILL also ends a
--- stopped process), end its requests in the editor, say so in one line. The next use
--- starts a fresh host.
function M.wedged(chan, why)
  local job = require('kznllm.job')
  if chan ~= M.chan then
    job.end_jobs_of(chan, 'the Python host is gone')
    return
  end
  killed[chan] = true
  if M.pid then
    pcall(vim.uv.kill, M.pid, 'sigkill')
  end
  pcall(vim.fn.jobstop, chan)
  M.chan, M.pid = nil, nil
  local reason = 'the Python host ' .. why .. '; it was stopped'
  local n, partial = job.end_jobs_of(chan, reason)
  local ended = 'it was stopped'
  if n > 0 then
    ended = ('ended %s%s'):format(
      n == 1 and '1 request' or (n .. ' requests'),
      partial > 0 and ' (partial output kept)' or ' (buffer unchanged)'
    )
  end
  notify(
    ('kznllm: the Python host %s: %s; the next use starts a new host'):format(why, ended),
    vim.log.levels.ERROR
  )
end

local function watch_tick()
  local job = require('kznllm.job')
  local chan = M.chan
  if not chan or not job.waiting_on(chan) then
    ping_timer:stop()
    return
  end
  local now = vim.uv.hrtime()
  local quiet = (now - (heard_at or started_at)) / 1e9
  local limits = M.limits()
  local limit = heard_at and limits.silence or limits.startup
  if quiet > limit then
    return M.wedged(chan, ('stopped answering (nothing for %.0f s)'):format(quiet))
  end
  pcall(vim.rpcnotify, chan, method, { 'ping', vim.empty_dict() })
end

--- While requests run, ping the host; silence past the limit means it is wedged.
--- Lua timers only, and notifications: nothing here can block the editor.
function M.watch()
  if not ping_timer then
    ping_timer = vim.uv.new_timer()
  end
  if ping_timer:is_active() then
    return
  end
  if heard_at then
    heard_at = vim.uv.hrtime() -- idle time before this request is no silence
  end
  local every = math.max(50, math.floor(math.min(1, M.limits().silence / 3) * 1000))
  ping_timer:start(every, every, vim.schedule_wrap(watch_tick))
end

-- Fire and forget: never waits on the host.
function M.notify(op, payload)
  vim.rpcnotify(M.ensure(), method, { op, payload or vim.empty_dict() })
end

local replies, next_seq = {}, 0

function M.reply(seq, value)
  if replies[seq] == false then
    replies[seq] = value
  end
end

--- A call that waits for its answer (preset names for the picker and completion; no
--- network I/O), with a deadline: a notification out, the answer as one back, events
--- processed meanwhile (vim.wait), never an rpcrequest a wedged host could hold.
function M.request(op, payload)
  local chan = M.ensure()
  next_seq = next_seq + 1
  local seq = next_seq
  replies[seq] = false
  vim.rpcnotify(
    chan,
    method,
    { 'request', { seq = seq, op = op, data = payload or vim.empty_dict() } }
  )
  local limits = M.limits()
  local limit = heard_at and limits.silence or limits.startup
  vim.wait(limit * 1000, function()
    return replies[seq] ~= false or M.chan ~= chan
  end, 5)
  local value = replies[seq]
  replies[seq] = nil
  if value == false then
    if M.chan == chan then
      M.wedged(chan, ('did not answer within %g s'):format(limit))
    end
    error('the Python host did not answer', 0)
  end
  M.heard()
  return value
end

return M
