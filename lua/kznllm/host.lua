-- The Python host: started lazily (on first use, without blocking the editor), one
-- process of our own running the remote plugin in rplugin/python3/kznllm.py.
local M = {}

local root = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h:h:h')
M.plugin_path = root .. '/rplugin/python3/kznllm.py'
local method = M.plugin_path .. ':function:KznllmHostCall'
local request_method = M.plugin_path .. ':function:KznllmHostRequest'

M.chan = nil
M.python = nil -- set by setup(); nil = auto

local function find_python()
  local candidates = {
    M.python,
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

--- Validate user presets at setup, in a short-lived process (the host stays lazy).
--- `on_problems` gets a list of messages, only if there are any.
function M.check_presets(presets, on_problems)
  local python = find_python()
  if not python then
    return
  end
  local code = ('import sys; sys.path.insert(0, %q); from kznllm_py.cli import main; '):format(root)
    .. "sys.exit(main(['presets', '--check', '-', '--json']))"
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
          on_problems(problems)
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
  local stderr = {}
  local argv = {
    python,
    '-c',
    'import sys; sys.path = [p for p in sys.path if p != ""]; import pynvim; pynvim.start_host()',
    M.plugin_path,
  }
  local chan = vim.fn.jobstart(argv, {
    rpc = true,
    on_stderr = function(_, data)
      for _, line in ipairs(data or {}) do
        if line ~= '' then
          table.insert(stderr, line)
        end
      end
    end,
    on_exit = function(_, code)
      M.chan = nil
      if code ~= 0 and vim.v.exiting == vim.NIL then
        local why = table.concat(vim.list_slice(stderr, math.max(1, #stderr - 5)), '\n')
        vim.schedule(function()
          vim.notify(
            ('kznllm: the Python host (%s) exited with code %d. %s\nRun :checkhealth kznllm'):format(
              python,
              code,
              why
            ),
            vim.log.levels.ERROR
          )
          require('kznllm.job').host_died()
        end)
      end
    end,
  })
  if chan <= 0 then
    error(('kznllm: could not start the Python host %s'):format(python), 0)
  end
  M.chan = chan
  -- build the HTTP client and compile the templates while the user types the query
  vim.rpcnotify(chan, method, { 'warmup', require('kznllm').host_payload() })
  return chan
end

-- Fire and forget: never waits on the host.
function M.notify(op, payload)
  vim.rpcnotify(M.ensure(), method, { op, payload or vim.empty_dict() })
end

-- Blocking request, for things without network I/O (preset names for completion).
function M.request(op, payload)
  return vim.rpcrequest(M.ensure(), request_method, { op, payload or vim.empty_dict() })
end

return M
