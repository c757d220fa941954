"""Remote-plugin entry: the Lua shim starts a Python host of its own with this file.

The repository root goes on sys.path so that a plugin checkout works with any Python
that has pynvim, httpx, jinja2 and orjson (the build step installs them). If the
package cannot be imported (e.g. this file is picked up by :UpdateRemotePlugins in a
Python without the dependencies), it registers nothing: harmless.
"""

import contextlib
import os
import sys

_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _root not in sys.path:
    sys.path.insert(0, _root)

with contextlib.suppress(ImportError):  # see the docstring
    from kznllm_py.nvim.plugin import KznllmPlugin  # noqa: F401  (discovered by the host)
