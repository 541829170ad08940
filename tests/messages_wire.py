"""Reading and checking Anthropic Messages streams, as the wire has them (SPEC section 10.1)."""
from __future__ import annotations

import json
from typing import Any


def parse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of every event of a stream; comments skipped."""
    out = []
    for block in raw.decode().split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        if data:
            payload = json.loads("\n".join(data))
            out.append((name or payload.get("type"), payload))
    return out


def check_events(events: list[tuple[str, dict[str, Any]]], model: str | None = None,
                 complete: bool = True) -> list[dict[str, Any]]:
    """Every rule a Messages stream keeps: message_start first; blocks 0..n each started, delta'd and stopped
    in order (one open at a time); then one message_delta and message_stop (`complete`), or one `error` last.
    Returns the blocks as a client would assemble them."""
    body = [(n, d) for n, d in events if n != "ping"]
    for name, data in events:
        assert name == data["type"], (name, data)
    assert body, "a stream has events"
    if body[0][0] == "error":
        assert len(body) == 1 and not complete
        return []
    assert body[0][0] == "message_start", body[0]
    message = body[0][1]["message"]
    assert message["id"].startswith("msg_") and message["role"] == "assistant" and message["content"] == []
    if model is not None:
        assert message["model"] == model
    blocks: list[dict[str, Any]] = []
    open_index: int | None = None
    rest = body[1:]
    tail = []
    for i, (name, data) in enumerate(rest):
        if name == "content_block_start":
            assert open_index is None, "one block at a time"
            assert data["index"] == len(blocks), (data["index"], len(blocks))
            blocks.append(dict(data["content_block"]))
            open_index = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_index, (data, open_index)
            _apply(blocks[open_index], data["delta"])
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
        else:
            tail = rest[i:]
            break
    names = [n for n, _ in tail]
    assert open_index is None or names == ["error"], "every started block is stopped, unless the stream failed"
    if complete:
        assert names == ["message_delta", "message_stop"], names
        delta = tail[0][1]
        assert isinstance(delta["delta"]["stop_reason"], str)
        assert isinstance(delta["usage"]["output_tokens"], int)
    else:
        assert names[-1:] == ["error"] and "message_stop" not in names, names
    for block in blocks:
        if block["type"] == "tool_use" and "partial_json" in block:
            block["input"] = json.loads(block.pop("partial_json") or "{}")
    return blocks


def _apply(block: dict[str, Any], delta: dict[str, Any]) -> None:
    kind = delta["type"]
    if kind == "text_delta":
        assert block["type"] == "text"
        block["text"] += delta["text"]
    elif kind == "thinking_delta":
        assert block["type"] == "thinking"
        block["thinking"] += delta["thinking"]
    elif kind == "signature_delta":
        assert block["type"] == "thinking"
        block["signature"] = block.get("signature", "") + delta["signature"]
    elif kind == "input_json_delta":
        assert block["type"] == "tool_use"
        block["partial_json"] = block.get("partial_json", "") + delta["partial_json"]
