"""Cheap token estimates: no tokenizer download, no network.

Used for TPM admission, budget worst cases, the mock's real counts, and usage
when an upstream reports none. Words, numbers and single punctuation marks
each count as a token, which tracks BPE counts of English text within ~25%.
"""
from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PER_MESSAGE = 4   # role and framing tokens, as OpenAI's own accounting adds


def count_text(text: str) -> int:
    return len(_TOKEN.findall(text))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def estimate_prompt(body: dict[str, Any]) -> int:
    total = 3
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        total += _PER_MESSAGE + count_text(_content_text(message.get("content")))
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict):
                fn = call.get("function") or {}
                total += count_text(str(fn.get("name", ""))) + count_text(str(fn.get("arguments", "")))
    for tool in body.get("tools") or ():
        total += count_text(str(tool))
    return total
