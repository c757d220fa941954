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

local function presets_report(python, presets)
  local host = require('kznllm.host')
  local code = ('import sys; sys.path.insert(0, %q); from kznllm_py.cli import main; '):format(
    host.root
  ) .. "sys.exit(main(['presets', '--json']))"
  local res = vim.system({ python, '-c', code }, { text = true }):wait(10000)
  local ok, rows = pcall(vim.json.decode, res.stdout or '')
  if not ok then
    return nil
  end
  local check = ('import sys; sys.path.insert(0, %q); from kznllm_py.cli import main; '):format(
    host.root
  ) .. "sys.exit(main(['presets', '--check', '-', '--json']))"
  local res2 = vim
    .system({ python, '-c', check }, { text = true, stdin = vim.json.encode(presets) })
    :wait(10000)
  local ok2, problems = pcall(vim.json.decode, res2.stdout or '')
  return rows, ok2 and problems.problems or { 'could not check the user presets' }
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

  local kzn = require('kznllm')
  local rows, problems = presets_report(python, kzn.config.presets or {})
  if not rows then
    health.error('could not list the presets')
  else
    for _, p in ipairs(problems or {}) do
      health.error('preset: ' .. p)
    end
    if problems and #problems == 0 then
      health.ok('user presets valid')
    end
    local current = kzn.current_preset()
    for _, r in ipairs(rows) do
      local key = r.key_present == true and ('key set (%s)'):format(r.key)
        or r.key_present == false and ('key missing (%s)'):format(r.key)
        or 'no key needed'
      local line = ('%s%s: %s'):format(
        r.id,
        (r.id == current or (not current and r.default)) and ' [current]' or '',
        key
      )
      if r.key_present == false then
        health.info(line)
      else
        health.ok(line)
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
