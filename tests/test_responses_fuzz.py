"""Hostile Responses clients: whatever JSON body, `POST /v1/responses` answers 200 or a 4xx in the OpenAI
envelope, never a 500 (hypothesis, against one real gateway process whose log must stay clean)."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_fuzz import _check, values

FIELDS = ["model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "temperature", "top_p",
          "max_output_tokens", "reasoning", "text", "metadata", "store", "previous_response_id", "stream", "include"]
parts = st.fixed_dictionaries({"type": st.one_of(st.sampled_from(["input_text", "output_text", "input_image",
                                                                 "refusal", "input_file"]), values)},
                              optional={"text": values, "image_url": values, "refusal": values})
items = st.one_of(
    st.fixed_dictionaries({"role": st.one_of(st.sampled_from(["user", "assistant", "system", "developer"]), values),
                           "content": st.one_of(st.text(max_size=20), st.lists(parts, max_size=3), values)},
                          optional={"type": st.just("message")}),
    st.fixed_dictionaries({"type": st.sampled_from(["function_call", "function_call_output", "reasoning",
                                                    "item_reference", "web_search_call"])},
                          optional={"call_id": values, "name": values, "arguments": values, "output": values,
                                    "summary": st.one_of(st.lists(st.fixed_dictionaries(
                                        {"type": st.just("summary_text"), "text": values}), max_size=2), values),
                                    "id": values}),
    values)
bodies = st.one_of(
    st.fixed_dictionaries({"model": st.sampled_from(["demo", "gpt", "nope"]),
                           "input": st.one_of(st.text(max_size=20), st.lists(items, max_size=4))},
                          optional={f: values for f in FIELDS if f not in ("model", "input")}),
    st.dictionaries(st.sampled_from(FIELDS), values, max_size=6),
    values,
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies)
def test_random_responses_bodies_never_500(fuzz_target, body):
    headers = {"Authorization": f"Bearer {fuzz_target.key}", "Content-Type": "application/json"}
    status, text = fuzz_target._request("POST", "/v1/responses", json.dumps(body).encode(), headers)
    _check(status, text)
    if status == 200 and not text.startswith("event:"):
        assert json.loads(text)["object"] == "response"
