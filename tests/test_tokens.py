"""The token estimate: the fast count must equal the regex it replaces, for any text."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.tokens import _TOKEN, count_text, estimate_prompt


def reference(text: str) -> int:
    """The rule as the module's regex states it (words, numbers, single marks, CJK characters)."""
    return len(_TOKEN.findall(text))


CASES = ["", " ", "Say hello", "hello, world!", "  x  ", "a_b-c", "x\x1cy\x1fz", "tab\tnew\nline\rcr\x0bvt\x0cff",
         "42 + 7 = 49;", "“quoted” café naïve", "中文没有空格", "emoji 🙂 here", "a\u00a0b\u2003c", "___", "\x00\x7f",
         "The quick brown fox, then 42 lines of code; " * 50 + "“tail”"]


def test_known_texts_count_as_the_regex_does():
    for text in CASES:
        assert count_text(text) == reference(text), repr(text)


def test_every_ascii_character_counts_as_the_regex_does():
    for i in range(128):
        for text in (chr(i), f"a{chr(i)}b", f"{chr(i)}{chr(i)}x", f"x {chr(i)}"):
            assert count_text(text) == reference(text), repr(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60) | st.text(max_size=60))
def test_any_text_counts_as_the_regex_does(text):
    assert count_text(text) == reference(text)


def test_prompt_estimate_adds_framing_per_message():
    body = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]}
    assert estimate_prompt(body) == 3 + (4 + 3) + (4 + 2)
