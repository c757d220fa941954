-- :checkhealth kznllm
local M = {}

local health = vim.health

local function python_report(python)
  local code = table.concat({
    'import sys, json',
    'out = {"python": sys.version.split()[0]}',
    'for m in ("pynvim", "httpx", "aiohttp", "jinja2", "orjson"):',
    '    try:',
    '        mod = __import__(m)',
    '        out[m] = getattr(mod, "__version__", None) or "installed"',
    '    except Exception as e:',
    '        out[m] = None',
    'print(json.dumps(out))',
  }, '\n')
  local res = vim.system({ python, '-c', code }, { text = true }):wait(10000)
  if res.code ~= 0 then
    return nil, vim.trim(res.stderr or '')
  end
  local ok, decoded = pcall(vim.json.decode, res.stdout or '')
  return ok and decoded or nil, 'could not read its answer'
end

local function cli(python, args, stdin)
  local host = require('kznllm.host')
  local code = ('import sys; sys.path.insert(0, %q); from kznllm_py.cli.main import main; '):format(
    host.root
  ) .. ('sys.exit(main(%s))'):format(vim.json.encode(args))
  local res = vim.system({ python, '-c', code }, { text = true, stdin = stdin }):wait(10000)
  local ok, decoded = pcall(vim.json.decode, res.stdout or '')
  return ok and decoded or nil, vim.trim(res.stderr or '')
end

--- The presets as the editor has them (built-ins and setup()'s), and the problems of
--- setup()'s presets.
local function presets_report(python, presets)
  local user = vim.json.encode(presets)
  local rows = cli(python, { 'presets', '--user', '-', '--json' }, user)
  local checked = cli(python, { 'presets', '--check', '-', '--json' }, user)
  if not rows then -- an invalid user preset: still list the built-ins
    rows = cli(python, { 'presets', '--json' })
  end
  return rows, checked and checked.problems or { 'could not check the user presets' }
end

local LOCAL_HOSTS =
  { ['127.0.0.1'] = true, ['localhost'] = true, ['::1'] = true, ['0.0.0.0'] = true }

--- Does anything accept a connection at host:port within `ms`? (local servers only:
--- a bounded TCP connect, no request is sent)
local function answers(host, port, ms)
  local addr = (host == 'localhost' or host == '0.0.0.0') and '127.0.0.1' or host
  local tcp = vim.uv.new_tcp()
  local result
  tcp:connect(addr, port, function(err)
    result = err == nil
  end)
  vim.wait(ms, function()
    return result ~= nil
  end, 10)
  if not tcp:is_closing() then
    tcp:close()
  end
  return result == true
end

function M.check()
  health.start('kznllm')
  local v = vim.version()
  if vim.fn.has('nvim-0.10') == 1 then
    health.ok(('Neovim %d.%d.%d'):format(v.major, v.minor, v.patch))
  else
    health.error('Neovim 0.10 or newer is needed')
  end

  local host = require('kznllm.host')
  local python = host.find_python()
  if not python then
    health.error('no Python found for the host', {
      'run the build step: python3 -m venv .venv && .venv/bin/pip install .',
      'or set require("kznllm").setup({ python = "/path/to/python" })',
    })
    return
  end
  local info, err = python_report(python)
  if not info then
    health.error(('Python %s does not run: %s'):format(python, err or ''))
    return
  end
  health.ok(('Python %s (%s)'):format(info.python, python))
  local missing = {}
  for _, m in ipairs({ 'pynvim', 'httpx', 'aiohttp', 'jinja2', 'orjson' }) do
    if info[m] == vim.NIL or info[m] == nil then
      table.insert(missing, m)
    else
      health.ok(('%s %s'):format(m, info[m]))
    end
  end
  if #missing > 0 then
    health.error('missing Python packages: ' .. table.concat(missing, ', '), {
      ('%s -m pip install %s'):format(python, table.concat(missing, ' ')),
    })
    return
  end
  if vim.fn.filereadable(host.plugin_path) == 1 then
    health.ok(
      'remote plugin: ' .. host.plugin_path .. ' (started by the plugin itself, no manifest)'
    )
  else
    health.error('remote plugin file missing: ' .. host.plugin_path)
  end
  health.info(
    host.chan and ('host running (channel %d)'):format(host.chan)
      or 'host not started yet (it starts on first use)'
  )

  local rows, problems = presets_report(python, require('kznllm.config').options.presets or {})
  if not rows then
    health.error('could not list the presets')
  else
    for _, p in ipairs(problems or {}) do
      health.error('preset: ' .. p)
    end
    if problems and #problems == 0 then
      health.ok('user presets valid')
    end
    local current = require('kznllm.presets').current_preset()
    local users = {}
    for _, p in ipairs(require('kznllm.config').options.presets or {}) do
      if type(p) == 'table' and p.id then
        users[p.id] = true
      end
    end
    for _, r in ipairs(rows) do
      local mine = r.id == current or (not current and r.default)
      local key = r.key_present == true and ('key set (%s)'):format(r.key)
        or r.key_present == false and ('key missing (%s)'):format(r.key)
        or 'no key needed'
      local line = ('%s%s%s: %s'):format(
        r.id,
        users[r.id] and ' (yours)' or '',
        mine and ' [current]' or '',
        key
      )
      -- a local server of a preset in use or of the user's own: is it up?
      local server = type(r.server) == 'table' and r.server or nil
      local probe = server and LOCAL_HOSTS[server.host] and (mine or users[r.id])
      if probe and not answers(server.host, server.port, 500) then
        health.warn(
          ('%s%s: nothing answers at %s:%d'):format(
            r.id,
            users[r.id] and ' (yours)' or '',
            server.host,
            server.port
          ),
          { ('start its server, or fix the base_url of preset %s'):format(r.id) }
        )
      elseif r.key_present == false then
        local report = mine and health.warn or health.info
        report(
          line,
          mine and { ('set %s in the environment Neovim starts from'):format(r.key) } or nil
        )
      else
        health.ok(line .. (probe and (' · %s:%d answers'):format(server.host, server.port) or ''))
      end
    end
  end

  if pcall(require, 'fidget') then
    health.ok('fidget.nvim found: progress shows there')
  else
    health.info('fidget.nvim not installed: progress shows as virtual text (optional)')
  end
end

return M
