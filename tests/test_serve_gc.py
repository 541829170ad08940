"""`gateway serve` takes start-up's objects out of the garbage collector's walks once started (settle_gc)."""
from __future__ import annotations

import re

from tests.procs import GatewayProcess


def test_serve_freezes_start_up_objects_and_still_answers(tmp_path):
    gw = GatewayProcess(tmp_path, args=("--log-level", "debug")).start()
    try:
        status, _ = gw.post_json({"model": "demo", "messages": [{"role": "user", "content": "hi"}]})
        assert status == 200
    finally:
        assert gw.stop() == 0
    said = re.search(r"collector: (\d+) start-up objects frozen", gw.log.read_text())
    assert said, gw.log.read_text()[-2000:]
    assert int(said.group(1)) > 10_000      # modules, routes and the app: tens of thousands of objects
