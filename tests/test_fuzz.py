"""Hostile clients: whatever the body or headers, the answer is a 4xx in the envelope or a 200, never a 500."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import check_error

FIELDS = ["model", "messages", "stream", "temperature", "max_tokens", "max_completion_tokens", "top_p",
          "frequency_penalty", "presence_penalty", "stop", "tools", "tool_choice", "response_format", "logprobs",
          "top_logprobs", "stream_options", "thinking", "n", "seed", "logit_bias", "user"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=False),
                    st.text(max_size=30))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                      max_leaves=12)
messages = st.lists(st.fixed_dictionaries({"role": st.one_of(st.sampled_from(["user", "system", "assistant", "tool"]),
                                                             values),
                                           "content": st.one_of(st.text(max_size=40), values)}), max_size=3)
bodies = st.one_of(
    st.fixed_dictionaries({"model": st.sampled_from(["demo", "gpt", "nope"]), "messages": messages},
                          optional={f: values for f in FIELDS if f not in ("model", "messages")}),
    st.dictionaries(st.sampled_from(FIELDS), values, max_size=6),
    values,
)


def _check(status: int, text: str) -> None:
    assert status < 500, (status, text)
    if status >= 400 and not text.startswith(("Invalid header", "Bad status line", "Invalid method")):
        check_error(json.loads(text))   # framing errors are answered by aiohttp's parser, before the app


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies)
def test_random_bodies_never_500(fuzz_target, body):
    status, text = fuzz_target.post_json(body)
    _check(status, text)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=300), content_type=st.sampled_from(["application/json", "text/plain", "", "a/b; x=\x01"]))
def test_random_bytes_never_500(fuzz_target, raw, content_type):
    status, text = fuzz_target.post_raw(raw, {"Content-Type": content_type} if content_type else {})
    _check(status, text)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(auth=st.text(max_size=60), extra=st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12),
                                                         st.text(max_size=40), max_size=3))
def test_random_headers_never_500(fuzz_target, auth, extra):
    headers = {k: v for k, v in {"Authorization": auth, **extra}.items()
               if all(32 <= ord(c) < 127 for c in k + v)}
    status, text = fuzz_target.post_raw(b'{"model":"demo","messages":[{"role":"user","content":"x"}]}', headers,
                                        with_key=False)
    _check(status, text)


def test_deep_and_huge_json(fuzz_target):
    deep = "[" * 100_000 + "]" * 100_000
    status, text = fuzz_target.post_raw(deep.encode(), {"Content-Type": "application/json"})
    _check(status, text)
    big = {"model": "demo", "messages": [{"role": "user", "content": "word " * 10}] * 20_000}
    status, text = fuzz_target.post_json(big)
    _check(status, text)
    nested = {"model": "demo", "messages": [{"role": "user", "content": "x"}], "metadata": {}}
    cur = nested["metadata"]
    for _ in range(500):
        cur["a"] = {}
        cur = cur["a"]
    _check(*fuzz_target.post_json(nested))
    crlf = {"model": "demo\r\nX-Injected: 1", "messages": [{"role": "user\r\n", "content": "\x00\u2028"}]}
    status, text = fuzz_target.post_json(crlf)
    _check(status, text)
    assert "X-Injected" not in fuzz_target.last_headers
    status, _ = fuzz_target.get("/health")
    assert status == 200
