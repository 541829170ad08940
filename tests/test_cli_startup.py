"""The CLI's database commands start without the HTTP stack: `keys list` on a ledger of any size is
bounded by Python's start-up and the imports it needs (issue 16 measured 0.44 s, 0.28 s without aiohttp)."""
from __future__ import annotations

import subprocess
import sys


def test_the_cli_loads_no_http_stack_until_it_serves():
    code = ("import sys, gateway.cli, gateway.cli.keys, gateway.store.sqlite; "
            "print(sorted(m for m in sys.modules if m == 'aiohttp' or m.startswith('aiohttp.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
