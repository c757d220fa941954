"""What the host pays before its first answer: pynvim registers the plugin's handlers at
the first call by reading every attribute of the plugin instance (inspect.getmembers),
so nothing reached that way may build the HTTP client or import what only a fill needs
(httpx, aiohttp, Jinja2: ~120 ms that a first :KznHistory would wait for)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import inspect, json, sys
import kznllm_py.nvim.plugin as plugin
before = set(sys.modules)
obj = plugin.KznllmPlugin(None)
# what pynvim's Host._discover_functions does with the instance at the first call
inspect.getmembers(obj, lambda o: hasattr(o, "_nvim_rpc_method_name"))
heavy = ("httpx", "aiohttp", "jinja2", "kznllm_py.stream.generation", "kznllm_py.stream.client")
print(json.dumps({
    "at_import": sorted(m for m in heavy if m in before),
    "after_registration": sorted(m for m in heavy if m in sys.modules),
}))
"""


def test_registering_the_plugins_handlers_imports_nothing_a_fill_needs():
    out = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, check=True
    )
    found = json.loads(out.stdout)
    assert found == {"at_import": [], "after_registration": []}, found
