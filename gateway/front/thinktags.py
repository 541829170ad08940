"""Moves a leading `<think>...</think>` out of content into reasoning.

Streaming text arrives in arbitrary pieces, so a tag may be split anywhere;
the splitter holds back only the bytes that could still be part of a tag.
"""
from __future__ import annotations

OPEN = "<think>"
CLOSE = "</think>"

_START, _THINKING, _AFTER, _PASS = range(4)


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper start of `tag`."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ThinkSplitter:
    __slots__ = ("_state", "_held", "passing")

    def __init__(self) -> None:
        self._state = _START
        self._held = ""
        self.passing = False   # no tag can come any more: `feed` gives its text back as content, as is

    def feed(self, text: str) -> tuple[str, str]:
        """Return (reasoning, content) that can be released now."""
        if self._state == _PASS:
            return "", text
        text = self._held + text
        self._held = ""
        reasoning = ""
        if self._state == _START:
            stripped = text.lstrip()
            if not stripped or (len(stripped) < len(OPEN) and OPEN.startswith(stripped)):
                self._held = text
                return "", ""
            if not stripped.startswith(OPEN):
                self._state, self.passing = _PASS, True
                return "", text
            self._state = _THINKING
            text = stripped[len(OPEN):]
        if self._state == _THINKING:
            end = text.find(CLOSE)
            if end < 0:
                keep = _partial_suffix(text, CLOSE)
                self._held = text[len(text) - keep:] if keep else ""
                return text[: len(text) - keep], ""
            reasoning = text[:end]
            text = text[end + len(CLOSE):]
            self._state = _AFTER
        if self._state == _AFTER:
            text = text.lstrip()
            if text:
                self._state, self.passing = _PASS, True
        return reasoning, text

    def flush(self) -> tuple[str, str]:
        held, self._held = self._held, ""
        if self._state == _THINKING:
            return held, ""
        return "", held


def split_whole(text: str) -> tuple[str | None, str]:
    """Non-streamed content: (reasoning or None, content without the tags).

    None means there was no leading tag; an empty `<think></think>` still gives
    "" so the tags never reach the content.
    """
    if not text.lstrip().startswith(OPEN):
        return None, text
    splitter = ThinkSplitter()
    reasoning, content = splitter.feed(text)
    more_reasoning, more_content = splitter.flush()
    return reasoning + more_reasoning, content + more_content
