"""Reading and checking OpenAI Responses answers and streams, as the wire has them (SPEC section 10.2).

Every answer and every event is validated against OpenAI's own schemas (tests/fixtures/openai,
see SOURCE.md there); each event against the `$defs` entry of its `type`.
"""
from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema

from tests.fakes import FIXTURES
from tests.messages_wire import parse_events

__all__ = ["check_events", "check_response", "parse_events"]
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
LIFECYCLE = ("response.created", "response.in_progress", *TERMINAL)


@cache
def _schema(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "openai" / f"{name}.schema.json").read_text())


@cache
def _response_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(_schema("Response"))


@cache
def _event_validator(kind: str) -> jsonschema.Draft202012Validator:
    """The schema of one event type: the anyOf entry whose `type` enum names it."""
    schema = _schema("ResponseStreamEvent")
    defs = schema["$defs"]
    for ref in schema["anyOf"]:
        name = ref["$ref"].rsplit("/", 1)[1]
        if defs[name].get("properties", {}).get("type", {}).get("enum") == [kind]:
            return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": defs})
    raise AssertionError(f"no schema for event type {kind!r}")


def check_response(body: dict[str, Any], model: str | None = None) -> dict[str, Any]:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _response_validator().iter_errors(body)]
    assert not errors, (errors[:5], body)
    assert body["id"].startswith("resp_") and body["object"] == "response"
    if model is not None:
        assert body["model"] == model
    usage = body.get("usage")
    if body["status"] in ("completed", "incomplete"):
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        assert (body["incomplete_details"] is None) == (body["status"] == "completed")
    return body


def check_events(events: list[tuple[str, dict[str, Any]]], model: str | None = None,
                 complete: bool = True) -> dict[str, Any]:
    """Every rule a Responses stream keeps; returns its last response (completed, incomplete or failed).

    Sequence numbers 0, 1, 2, ...; created and in_progress first; items added with output indexes
    0..n, each filled only while open and done once; parts likewise by content index; exactly one
    terminal event, last; the terminal response's output is the items as they were done."""
    assert events, "a stream has events"
    for n, (name, data) in enumerate(events):
        assert name == data["type"], (name, data)
        assert data["sequence_number"] == n, (n, data)
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in _event_validator(name).iter_errors(data)]
        assert not errors, (errors[:5], data)
    names = [n for n, _ in events]
    assert names[:2] == ["response.created", "response.in_progress"], names[:3]
    terminal = [n for n in names if n in TERMINAL]
    assert len(terminal) == 1 and names[-1] == terminal[0], names
    assert (terminal[0] != "response.failed") == complete, terminal
    ids = {d["response"]["id"] for n, d in events if n in LIFECYCLE}
    assert len(ids) == 1, ids
    if model is not None:
        assert all(d["response"]["model"] == model for n, d in events if n in LIFECYCLE)
    items: list[dict[str, Any]] = []
    done: dict[int, dict[str, Any]] = {}
    open_parts: dict[int, int] = {}
    for name, data in events[2:-1]:
        if name == "response.output_item.added":
            assert data["output_index"] == len(items), (data, len(items))
            assert all(i in done for i in range(len(items))), "one item at a time"
            items.append(data["item"])
            continue
        index = data["output_index"]
        assert index < len(items) and index not in done, (name, index)
        if "item_id" in data:
            assert data["item_id"] == items[index]["id"], (data, items[index])
        if name == "response.output_item.done":
            assert index not in open_parts, "every part is done before its item"
            assert data["item"]["id"] == items[index]["id"]
            done[index] = data["item"]
        elif name == "response.content_part.added":
            assert index not in open_parts
            open_parts[index] = data["content_index"]
        elif name == "response.content_part.done":
            assert open_parts.pop(index) == data["content_index"]
        elif "content_index" in data:
            assert open_parts.get(index) == data["content_index"], (name, data)
    final = events[-1][1]["response"]
    if complete:
        assert sorted(done) == list(range(len(items))), "every item is done"
        assert final["output"] == [done[i] for i in range(len(items))]
        check_response(final, model)
    return final
