"""The leading `<think>...</think>` splitter (gateway/front/thinktags.py).

Streamed content arrives in arbitrary pieces, so each case is fed whole, in two
pieces at every offset and in three pieces at every pair of offsets; the
result must never depend on where the cuts fall, and content never shows a tag
that was moved.
"""
from __future__ import annotations

import itertools

import pytest

from gateway.front.thinktags import ThinkSplitter, split_whole
from tests.fakes import Behaviour, openai_text

CASES = [
    # (text, reasoning, content)
    ("<think>ponder</think>\n\nAnswer", "ponder", "Answer"),
    ("<think>\nstep 1\nstep 2\n</think>The end.", "\nstep 1\nstep 2\n", "The end."),
    ("  \n\t<think>x</think>y", "x", "y"),                           # whitespace before <think>
    ("No think tag at all.", "", "No think tag at all."),
    ("  leading spaces stay", "", "  leading spaces stay"),
    ("<think>unterminated reasoning", "unterminated reasoning", ""),   # stream ended while thinking
    ("<think>a</thi", "a</thi", ""),                                 # ended inside the closing tag
    ("<think>a</think>", "a", ""),
    ("<think>a</think>  \n ", "a", ""),
    ("<think></think>Answer", "", "Answer"),                          # empty think block
    ("<think>\n\n</think>\n\nAnswer", "\n\n", "Answer"),               # Qwen3 with thinking off
    ("Answer: use <think> tags.", "", "Answer: use <think> tags."),   # not leading: stays content
    ("Hi <think>x</think> there", "", "Hi <think>x</think> there"),
    ("<think>a</think>b <think>c</think>", "a", "b <think>c</think>"),  # only the leading block moves
    ("<think>a <think> b</think>c", "a <think> b", "c"),
    ("<think>a </thinking> b</think>c", "a </thinking> b", "c"),
    ("<thinking>not ours</thinking>", "", "<thinking>not ours</thinking>"),
    ("<thin", "", "<thin"),                                          # a tag that never completed
    ("<b>bold</b>", "", "<b>bold</b>"),
    ("   ", "", "   "),
    ("<", "", "<"),
    ("", "", ""),
]


def run(pieces: list[str]) -> tuple[str, str]:
    splitter = ThinkSplitter()
    reasoning, content = [], []
    for piece in [*pieces, None]:
        r, c = splitter.feed(piece) if piece is not None else splitter.flush()
        reasoning.append(r)
        content.append(c)
    return "".join(reasoning), "".join(content)


def two_pieces(text: str):
    return [[text[:i], text[i:]] for i in range(len(text) + 1)]


def three_pieces(text: str):
    offsets = itertools.combinations_with_replacement(range(len(text) + 1), 2)
    return [[text[:i], text[i:j], text[j:]] for i, j in offsets]


@pytest.mark.parametrize("text,reasoning,content", CASES)
def test_whole(text, reasoning, content):
    assert run([text]) == (reasoning, content)


@pytest.mark.parametrize("text,reasoning,content", CASES)
def test_split_in_two_at_every_offset(text, reasoning, content):
    for pieces in two_pieces(text):
        assert run(pieces) == (reasoning, content), pieces


@pytest.mark.parametrize("text,reasoning,content", CASES)
def test_split_in_three_at_every_pair_of_offsets(text, reasoning, content):
    for pieces in three_pieces(text):
        assert run(pieces) == (reasoning, content), pieces


@pytest.mark.parametrize("text,reasoning,content", CASES)
def test_one_character_at_a_time(text, reasoning, content):
    assert run(list(text)) == (reasoning, content)


def test_tags_split_at_every_position_never_reach_content():
    text = "<think>deep thought</think>Answer"
    for pieces in three_pieces(text):
        splitter = ThinkSplitter()
        for piece in pieces:
            _, content = splitter.feed(piece)
            assert "<" not in content and ">" not in content, pieces


def test_reasoning_is_released_as_it_arrives_not_at_the_end():
    splitter = ThinkSplitter()
    assert splitter.feed("<think>first") == ("first", "")
    assert splitter.feed(" second </th") == (" second ", "")       # only a possible tag start is held
    assert splitter.feed("ink>Answer") == ("", "Answer")
    assert splitter.feed(" more") == ("", " more")
    assert splitter.flush() == ("", "")


def test_content_without_a_tag_passes_at_once():
    splitter = ThinkSplitter()
    assert splitter.feed("Hello") == ("", "Hello")
    assert splitter.feed("<think>") == ("", "<think>")


def test_only_a_possible_opening_is_held():
    splitter = ThinkSplitter()
    assert splitter.feed("\n<thi") == ("", "")
    assert splitter.feed("s is not a tag") == ("", "\n<this is not a tag")


@pytest.mark.parametrize("text,reasoning,content", CASES)
def test_split_whole(text, reasoning, content):
    got_reasoning, got_content = split_whole(text)
    leading = text.lstrip().startswith("<think>")
    assert got_reasoning == (reasoning if leading else None)
    assert got_content == (content if leading else text)


@pytest.mark.parametrize("text,reasoning,content", [("<think>ponder</think>\n\nAnswer", "ponder", "Answer"),
                                                    ("<think></think>Answer", None, "Answer"),
                                                    ("Say <think> twice", None, "Say <think> twice")])
async def test_whole_answer_through_the_gateway(gateway, key, upstream, text, reasoning, content):
    upstream.queue(Behaviour(json=openai_text(text)))
    resp = await gateway.post(key, {"model": "gpt", "messages": [{"role": "user", "content": "x"}]})
    message = (await resp.json())["choices"][0]["message"]
    assert message["content"] == content
    assert message.get("reasoning_content") == reasoning
