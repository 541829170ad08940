"""settings.max_upstream_bytes: no upstream answer is read past it, whole or streamed (SPEC sections 3 and 9).

A body or a stream over the cap is a clean 502 `upstream_too_large` (not retried: the same request
would most likely get the same answer) with its ledger row; mid-stream it is one error event and no
[DONE]. A real gateway process under three 300 MB answers stays near the cap, not at their size.
"""
from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from tests.conftest import check_error, parse_sse
from tests.fakes import Behaviour
from tests.procs import GatewayProcess

CAP = 100_000
MSG = [{"role": "user", "content": "x"}]
# the opening of a chat.completion whose content never ends
BODY_HEAD = b'{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"'
JSON = {"content-type": "application/json"}
ROLE = b'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
WORDS = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"' + b"word " * 200 + b'"}}]}\n\n'


def routes(url: str, cap: int | None = CAP, limits: str = "", timeout: float = 2) -> str:
    settings = f"  max_upstream_bytes: {cap}\n" if cap else ""
    return f"""
settings:
{settings}{limits}
providers:
  up: {{dialect: openai, base_url: "{url}/v1", api_key: sk-upstream-secret-0123456789}}
routes:
  gpt:
    retries: 2
    timeout: {timeout}
    targets: [{{provider: up, model: m, price: {{input: 1, output: 1}}}}]
"""


async def gateway(start_gateway, upstream):
    gw = await start_gateway(routes(upstream.url))
    gw.key = (await gw.create_key())["key"]
    return gw


async def too_large(gw, upstream, resp) -> dict:
    """A 502 upstream_too_large before anything streamed, tried once, booked as an error."""
    assert resp.status == 502 and resp.headers["content-type"].startswith("application/json")
    err = check_error(await resp.json(), "upstream_too_large")
    assert err["type"] == "api_error" and str(CAP) in err["message"]
    assert len(upstream.requests) == 1              # not retried, though the route has retries: 2
    row = (await gw.rows())[-1]
    assert row["status"] == "error" and row["http_status"] == 502 and row["error_code"] == "upstream_too_large"
    return row


async def test_non_stream_body_over_the_cap_is_502(start_gateway, upstream):
    gw = await gateway(start_gateway, upstream)
    upstream.queue(Behaviour(sse=BODY_HEAD, flood=50_000_000, headers=JSON))   # 50 MB, chunked
    started = time.monotonic()
    resp = await gw.post(gw.key, {"model": "gpt", "messages": MSG})
    await too_large(gw, upstream, resp)
    assert time.monotonic() - started < 1.5         # it stopped reading at the cap, not at 50 MB


async def test_content_length_over_the_cap_fails_at_once(start_gateway, upstream):
    gw = await gateway(start_gateway, upstream)
    # it announces 300 MB, sends one byte and then nothing: only the header can end this before the timeout
    upstream.queue(Behaviour(sse=b"{x", chunk_size=1, stall_after=1, headers={**JSON, "Content-Length": "300000000"}))
    started = time.monotonic()
    resp = await gw.post(gw.key, {"model": "gpt", "messages": MSG})
    await too_large(gw, upstream, resp)
    assert time.monotonic() - started < 1.0         # the route timeout is 2 s


async def test_body_under_the_cap_still_works(start_gateway, upstream):
    gw = await gateway(start_gateway, upstream)
    text = "y" * (CAP - 1_000)
    upstream.queue(Behaviour(json={"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                "finish_reason": "stop"}]}))
    resp = await gw.post(gw.key, {"model": "gpt", "messages": MSG})
    assert resp.status == 200 and (await resp.json())["choices"][0]["message"]["content"] == text


async def test_stream_over_the_cap_before_the_first_chunk_is_502(start_gateway, upstream):
    gw = await gateway(start_gateway, upstream)
    upstream.queue(Behaviour(sse=ROLE, flood=50_000_000, flood_with=b": padding " * 50 + b"\n\n"))
    resp = await gw.post(gw.key, {"model": "gpt", "stream": True, "messages": MSG})
    row = await too_large(gw, upstream, resp)
    assert row["stream"] == 1


async def test_stream_over_the_cap_mid_stream_ends_with_one_error_event(start_gateway, upstream):
    gw = await gateway(start_gateway, upstream)
    # a few events one by one (the first reaches the client), then 50 MB more of them as fast as they go
    upstream.queue(Behaviour(sse=ROLE + WORDS * 3, events=True, delay=0.02, flood=50_000_000, flood_with=WORDS))
    resp = await gw.post(gw.key, {"model": "gpt", "stream": True, "messages": MSG})
    assert resp.status == 200
    raw = await resp.read()
    assert len(raw) < 2 * CAP                       # what was relayed before the cap, not 50 MB
    events = parse_sse(raw)
    assert "[DONE]" not in events and "error" in events[-1]
    assert all("error" not in e for e in events[:-1]) and len(events) > 2   # content streamed, then the error
    err = check_error(events[-1], "upstream_too_large")
    assert err["type"] == "api_error"
    row = (await gw.rows())[-1]
    assert row["status"] == "error" and row["http_status"] == 200 and row["error_code"] == "upstream_too_large"
    assert row["completion_tokens"] > 0 and len(upstream.requests) == 1


def vm_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        lines = status.read().splitlines()
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field}")


LIMITS = """  limits: {default_rpm: 100000, default_tpm: 100000000, default_budget: 1000000,
           max_rpm: 100000, max_tpm: 100000000, max_budget: 1000000}
"""


async def test_three_300_mb_answers_stay_near_the_default_cap(tmp_path, upstream):
    """The default cap (64 MiB): three concurrent 300 MB bodies cost at most three caps, not 900 MB+."""
    gw = GatewayProcess(tmp_path, routes=routes(upstream.url, cap=None, limits=LIMITS, timeout=30)).start()
    try:
        pid = gw.proc.pid
        idle = vm_kb(pid, "VmHWM")
        for _ in range(3):
            upstream.queue(Behaviour(sse=BODY_HEAD, flood=300_000_000, headers=JSON))
        headers = {"Authorization": f"Bearer {gw.key}", "Content-Type": "application/json"}
        body = json.dumps({"model": "gpt", "messages": MSG})
        started = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            async def one() -> tuple[int, dict]:
                async with http.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", data=body,
                                     headers=headers) as resp:
                    return resp.status, await resp.json()

            answers = await asyncio.gather(one(), one(), one())
        took = time.monotonic() - started
        peak, after = vm_kb(pid, "VmHWM"), vm_kb(pid, "VmRSS")
        print(f"\nidle VmHWM {idle / 1024:.0f} MB, peak VmHWM {peak / 1024:.0f} MB, "
              f"VmRSS after {after / 1024:.0f} MB, {took:.1f} s")
        assert [s for s, _ in answers] == [502] * 3
        assert all(a["error"]["code"] == "upstream_too_large" for _, a in answers), answers
        assert peak < idle + 3 * 64 * 1024 + 40 * 1024, f"peak {peak / 1024:.0f} MB"   # three caps and some slack
        assert peak < 320 * 1024
    finally:
        assert gw.stop() == 0
    assert [r[0] for r in gw.rows("SELECT error_code FROM requests")] == ["upstream_too_large"] * 3
    assert "Traceback" not in gw.log.read_text()
