"""`python -m kznllm_py.cli`: the `kznllm` command."""

import sys

from kznllm_py.cli.main import main

sys.exit(main())
