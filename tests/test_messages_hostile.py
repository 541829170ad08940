"""Any Messages body, of any shape, gets an answer or a 4xx in Anthropic's envelope: never a 500.

Bodies are drawn well formed (every block, tool and choice kind SPEC 10.1 lists, and
some it passes through), then 0 to 2 positions at any depth get a value of another
JSON type or lose their key. The pure property runs every translation and every
dialect's builder on what validation lets through; the HTTP one sends such bodies
to a running gateway on each route kind (Anthropic pass-through, OpenAI, mock).
"""
from __future__ import annotations

import asyncio
import copy
import json
import socket
import threading
from typing import Any

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.dialects import anthropic, mock, openai
from gateway.dialects.base import TargetView
from gateway.errors import InvalidRequest
from gateway.front import messages
from gateway.tokens import estimate_prompt
from tests.conftest import MASTER, default_routes
from tests.fakes import FakeUpstream
from tests.test_hostile_input import _positions, junk, obj, words

count = st.integers(1, 2 ** 31 - 1)
source = st.one_of(obj({"type": st.just("base64"), "media_type": st.just("image/png"), "data": words}),
                   obj({"type": st.just("url"), "url": st.just("https://example.com/a.png")}),
                   obj({"type": st.sampled_from(["file", "text"])}, data=words))
text = obj({"type": st.just("text"), "text": words}, cache_control=st.just({"type": "ephemeral"}))
block = st.one_of(
    text,
    obj({"type": st.sampled_from(["image", "document"]), "source": source}),
    obj({"type": st.just("tool_use"), "id": words, "name": words, "input": st.just({"a": 1})}),
    obj({"type": st.just("tool_result"), "tool_use_id": words},
        content=st.one_of(words, st.lists(text, max_size=2)), is_error=st.booleans()),
    obj({"type": st.just("thinking"), "thinking": words}, signature=words),
    obj({"type": st.just("redacted_thinking"), "data": words}),
    obj({"type": st.sampled_from(["server_tool_use", "x"])}, id=words),
)
message = obj({"role": st.sampled_from(["user", "assistant"]),
               "content": st.one_of(words, st.lists(block, min_size=1, max_size=3))})
tool = st.one_of(obj({"name": words, "input_schema": st.just({"type": "object"})}, description=words),
                 obj({"type": st.just("web_search_20250305"), "name": words}))
OPTIONAL = {
    "system": st.one_of(words, st.lists(text, max_size=2)),
    "tools": st.lists(tool, max_size=2),
    "tool_choice": st.one_of(obj({"type": st.sampled_from(["auto", "any", "none"])},
                                 disable_parallel_tool_use=st.booleans()),
                             obj({"type": st.just("tool"), "name": words})),
    "temperature": st.floats(0, 1), "top_p": st.floats(0, 1), "top_k": st.integers(0, 500),
    "stop_sequences": st.lists(words, max_size=6),
    "metadata": obj({}, user_id=words),
    "thinking": st.one_of(obj({"type": st.just("enabled"), "budget_tokens": st.integers(1024, 3000)}),
                          st.just({"type": "disabled"})),
}


@st.composite
def bodies(draw, models: st.SearchStrategy) -> dict[str, Any]:
    body = copy.deepcopy(draw(obj({"model": models, "max_tokens": st.integers(3001, 8000),
                                   "messages": st.lists(message, min_size=1, max_size=4),
                                   "stream": st.booleans()}, **OPTIONAL)))
    for _ in range(draw(st.sampled_from([0, 1, 1, 2]))):
        positions = [p for p in _positions(body) if p[0] != "model"]
        depth = draw(st.sampled_from(sorted({len(p) for p in positions})))
        path = draw(st.sampled_from([p for p in positions if len(p) == depth]))
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(draw(junk))
    return body


VIEW = TargetView(model="up-model", base_url="http://127.0.0.1:9", api_key="k", thinking="native")


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies(st.just("m")))
def test_validated_messages_never_trip_a_translation_or_a_dialect(body):
    body = orjson.loads(json.dumps(body))
    try:
        asked = messages.decode(body, drop_unsupported=True, headers={})
    except InvalidRequest as err:
        assert err.status == 400 and err.param
        return
    estimate_prompt(asked.body)
    for dialect in (openai, anthropic, mock):
        orjson.dumps(dialect.build_request(copy.deepcopy(asked.body), VIEW, asked.stream).body)
    sent = anthropic.build_native(copy.deepcopy(body), VIEW, asked.stream, {}).body
    assert sent == {**body, "model": "up-model"} or (not asked.stream and "stream" in body)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A gateway and a fake upstream on real ports in a thread of their own, for the whole module."""
    ready: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    async def start() -> None:
        fake = FakeUpstream()
        up = web.AppRunner(fake.app())
        await up.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(up, sock).start()
        fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        from gateway.app import create_app
        from gateway.appkeys import ServerOptions
        from gateway.config import parse_config
        db = tmp_path_factory.mktemp("hostile-messages") / "gw.db"
        app = create_app(parse_config(default_routes(fake.url)), ServerOptions(None, str(db), master_key=MASTER))
        gw = web.AppRunner(app)
        await gw.setup()
        gsock = socket.socket()
        gsock.bind(("127.0.0.1", 0))
        await web.SockSite(gw, gsock).start()
        ready["url"] = f"http://127.0.0.1:{gsock.getsockname()[1]}"
        ready["runners"] = (gw, up)

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    yield ready["url"]
    for runner in ready["runners"]:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)


@settings(max_examples=90, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies(st.sampled_from(["claude", "gpt", "demo"])))
def test_any_body_over_http_is_an_answer_or_a_4xx_envelope(served, body):
    import urllib.request

    def call(path: str, payload: dict) -> tuple[int, bytes]:
        req = urllib.request.Request(served + path, data=json.dumps(payload).encode(), method="POST",
                                     headers={"x-api-key": _key(served), "content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        status, raw = call(path, body)
        assert status < 500, (path, status, raw[:300])
        if status >= 400:
            envelope = json.loads(raw)
            assert envelope["type"] == "error" and isinstance(envelope["error"]["message"], str), raw[:300]
            assert envelope["error"]["type"] in ("invalid_request_error", "not_found_error", "api_error"), raw


_KEYS: dict[str, str] = {}


def _key(url: str) -> str:
    if url not in _KEYS:
        import urllib.request
        req = urllib.request.Request(url + "/admin/keys", data=json.dumps({"name": "fuzz"}).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {MASTER}", "content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            _KEYS[url] = json.loads(resp.read())["key"]
    return _KEYS[url]
