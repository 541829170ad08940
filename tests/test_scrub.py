"""Property: a secret the gateway holds never leaves it, whatever its shape and wherever an upstream echoes it.

Over every dialect (openai, anthropic), stream and not, before and after the
first chunk, with the secret in each field of the upstream's error (message,
type, code, param) and in every shape a provider issues (sk-..., 32 and 40 hex
digits, a plain word): the client's answer, every log line and the ledger are
clean, and `requests.error_code` is a short code.
"""
from __future__ import annotations

import itertools
import json
import re

from gateway.errors import GatewayError
from gateway.scrub import Scrubber
from tests.conftest import MASTER, check_error, parse_sse
from tests.fakes import Behaviour
from tests.messages_wire import parse_events

HEX32 = "0123456789abcdef0123456789abcdef"
HEX40 = "fedcba9876543210fedcba9876543210fedcba98"
PLAIN = "upstreamplainsecret"
SKISH = "sk-shaped-upstream-secret-0123456789"
SECRETS = {"hex32": HEX32, "hex40": HEX40, "plain": PLAIN, "sk": SKISH}
CODE = re.compile(r"[a-z0-9_.\-]{1,64}")
MSG = [{"role": "user", "content": "x"}]


def routes(url: str) -> str:
    lines = ["providers:"]
    for name, secret in SECRETS.items():
        lines.append(f'  oa-{name}: {{dialect: openai, base_url: "{url}/v1", api_key: "{secret}"}}')
        lines.append(f'  an-{name}: {{dialect: anthropic, base_url: "{url}", api_key: "{secret}"}}')
    lines.append("routes:")
    for name in SECRETS:
        for kind in ("oa", "an"):
            lines.append(f"  {kind}-{name}: {{retries: 0, timeout: 2, targets: [{{provider: {kind}-{name}, "
                         f"model: m, price: {{input: 1.0, output: 1.0}}}}]}}")
    return "\n".join(lines) + "\n"


def error_body(kind: str, field: str, secret: str) -> dict:
    error = {"message": "bad request", "type": "invalid_request_error", "code": "bad", "param": "messages"}
    error[field] = f"Bearer {secret}" if field != "message" else f"your key {secret} is invalid"
    return {"type": "error", "error": error} if kind == "an" else {"error": error}


def first_event(kind: str, body: dict) -> bytes:
    if kind == "an":
        return f"event: error\ndata: {json.dumps(body)}\n\n".encode()
    return f"data: {json.dumps(body)}\n\n".encode()


def mid_stream(kind: str, body: dict) -> bytes:
    """A stream that starts well, then carries the hostile error as its next event."""
    if kind == "an":
        start = {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                      "content": [], "model": "m", "stop_reason": None,
                                                      "usage": {"input_tokens": 3, "output_tokens": 1}}}
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
        events = [("message_start", start), ("content_block_start", block), ("content_block_delta", delta),
                  ("error", body)]
        return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)
    head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    first = {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}]}
    return f"data: {json.dumps(first)}\n\ndata: {json.dumps(body)}\n\n".encode()


async def test_no_held_secret_leaves_by_any_field_dialect_or_phase(start_gateway, upstream, no_secret_in_any_log):
    gateway = await start_gateway(routes(upstream.url))
    key = (await gateway.create_key(rpm=1000))["key"]
    seen_lines = len(no_secret_in_any_log.lines)
    cases = list(itertools.product(SECRETS.items(), ("oa", "an"), ("message", "type", "code", "param"),
                                   ("status", "before-first-chunk", "first-event", "mid-stream")))
    for (name, secret), kind, field, phase in cases:
        body = error_body(kind, field, secret)
        stream = phase != "status"
        if phase == "mid-stream":
            upstream.queue(Behaviour(sse=mid_stream(kind, body), events=True, delay=0.01))
        elif phase == "first-event":   # a 200 stream whose first event is the error
            upstream.queue(Behaviour(sse=first_event(kind, body)))
        else:
            upstream.queue(Behaviour(status=400, json=body))
        resp = await gateway.post(key, {"model": f"{kind}-{name}", "messages": MSG, "stream": stream})
        raw = await resp.text()
        where = (name, kind, field, phase)
        assert secret not in raw and secret not in str(dict(resp.headers)), (where, raw)
        if phase == "mid-stream":
            events = parse_sse(raw.encode())
            assert resp.status == 200 and "[DONE]" not in events, where
            error = check_error(events[-1])
        elif phase == "first-event":
            assert resp.status == 502, (where, resp.status, raw)
            error = check_error(json.loads(raw))
        else:
            assert resp.status == 400, (where, resp.status, raw)
            error = check_error(json.loads(raw))
        assert error["type"] and CODE.fullmatch(error["type"]), (where, error)
        assert error["code"] is None or CODE.fullmatch(error["code"]), (where, error)
    rows = await gateway.rows("SELECT error_code, status FROM requests WHERE key_id IS NOT NULL ORDER BY id")
    assert len(rows) == len(cases)
    for row in rows:
        assert row["status"] == "error" and CODE.fullmatch(row["error_code"]), row
        assert not any(s in row["error_code"] for s in SECRETS.values())
    lines = no_secret_in_any_log.lines[seen_lines:]
    assert any('"gateway.access"' in line for line in lines), "the access log was watched"
    for line in lines:
        assert not any(s in line for s in SECRETS.values()), line


ANTHROPIC_TYPES = {"invalid_request_error", "authentication_error", "permission_error", "not_found_error",
                   "request_too_large", "rate_limit_error", "api_error", "overloaded_error", "timeout_error"}


async def test_no_held_secret_leaves_through_the_messages_api_either(start_gateway, upstream, no_secret_in_any_log):
    """The same property for `/v1/messages` clients: Anthropic's envelope, same scrubbing, pass-through or not."""
    gateway = await start_gateway(routes(upstream.url))
    key = (await gateway.create_key(rpm=1000))["key"]
    seen_lines = len(no_secret_in_any_log.lines)
    cases = list(itertools.product(SECRETS.items(), ("oa", "an"), ("message", "type", "code", "param"),
                                   ("status", "first-event", "mid-stream")))
    for (name, secret), kind, field, phase in cases:
        body = error_body(kind, field, secret)
        if phase == "mid-stream":
            upstream.queue(Behaviour(sse=mid_stream(kind, body), events=True, delay=0.01))
        elif phase == "first-event":
            upstream.queue(Behaviour(sse=first_event(kind, body)))
        else:
            upstream.queue(Behaviour(status=400, json=body))
        resp = await gateway.http.post(f"{gateway.url}/v1/messages", headers={"x-api-key": key}, json={
            "model": f"{kind}-{name}", "max_tokens": 16, "messages": MSG, "stream": phase != "status"})
        raw = await resp.text()
        where = (name, kind, field, phase)
        assert secret not in raw and secret not in str(dict(resp.headers)), (where, raw)
        if phase == "mid-stream":
            events = parse_events(raw.encode())
            assert resp.status == 200 and events[-1][0] == "error", (where, raw)
            envelope = events[-1][1]
        else:
            assert resp.status == (400 if phase == "status" else 502), (where, resp.status, raw)
            envelope = json.loads(raw)
        assert envelope["type"] == "error" and envelope["error"]["type"] in ANTHROPIC_TYPES, (where, envelope)
    rows = await gateway.rows("SELECT error_code FROM requests WHERE key_id IS NOT NULL ORDER BY id")
    assert len(rows) == len(cases) and all(CODE.fullmatch(r["error_code"]) for r in rows)
    for line in no_secret_in_any_log.lines[seen_lines:]:
        assert not any(s in line for s in SECRETS.values()), line


async def test_a_reload_teaches_the_scrubber_the_new_keys(start_gateway, upstream, tmp_path):
    config = tmp_path / "routes.yaml"
    gateway = await start_gateway(routes(upstream.url), config_path=config)
    new = "abcdefabcdefabcdefabcdefabcdef99"
    config.write_text(routes(upstream.url).replace(HEX32, new))
    from gateway.ops.watch import reload_now
    assert reload_now(gateway.app)
    key = (await gateway.create_key())["key"]
    upstream.queue(Behaviour(status=400, json=error_body("oa", "message", new)))
    resp = await gateway.post(key, {"model": "oa-hex32", "messages": MSG})
    assert resp.status == 400 and new not in await resp.text()


async def test_the_gateway_s_own_hints_are_not_redacted(gateway):
    async with gateway.http.post(f"{gateway.base_url}/chat/completions", json={"model": "gpt"}) as resp:
        error = check_error(await resp.json(), "invalid_api_key")
    assert "[redacted]" not in error["message"] and "Authorization: Bearer" in error["message"]
    async with gateway.http.get(f"{gateway.url}/admin/keys") as resp:
        assert "[redacted]" not in (await resp.json())["error"]["message"]
    assert MASTER not in error["message"]


def test_foreign_fields_keep_only_codes():
    scrubber = Scrubber([HEX40, "Bearer " + HEX32])
    err = GatewayError(f"no {HEX40} or {HEX32} or sk-abcdef123456", status=400, type=f"Bearer {HEX32}",
                       code="x" * 65, param=HEX40, foreign=True)
    out = err.envelope(scrubber)["error"]
    assert out == {"message": "no [redacted] or [redacted] or [redacted]", "type": "invalid_request_error",
                   "param": None, "code": "upstream_rejected"}
    assert err.ledger_code(scrubber) == "upstream_rejected"
    assert GatewayError("x", code="model_not_found").ledger_code(scrubber) == "model_not_found"
    assert Scrubber(["ab"]).values("ab cab") == "ab cab", "too short to be a secret: never redacts words"
