"""A fake OpenTelemetry collector for the benchmark with tracing on: takes OTLP/HTTP `POST /v1/traces`.

It answers at once and counts what it got, without decoding (decoding is the test collector's job,
tests/otlp.py), so the gateway's share of the machine is what the bench measures:

    python bench/collector.py &            # PORT (4318)
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 ONLY=main bash bench/run.sh

On SIGTERM/SIGINT it prints the batches and bytes it received.
"""
from __future__ import annotations

import os
import sys

from aiohttp import web

EMPTY = b""   # an empty ExportTraceServiceResponse: every span accepted


def main() -> None:
    seen = {"batches": 0, "bytes": 0}

    async def traces(request: web.Request) -> web.Response:
        seen["batches"] += 1
        seen["bytes"] += len(await request.read())
        return web.Response(body=EMPTY, content_type="application/x-protobuf")

    async def report(app: web.Application) -> None:
        print(f"collector: {seen['batches']} batches, {seen['bytes']} bytes", file=sys.stderr)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    app.on_cleanup.append(report)
    web.run_app(app, host="127.0.0.1", port=int(os.environ.get("PORT", "4318")), print=None, access_log=None)


if __name__ == "__main__":
    main()
