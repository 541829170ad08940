"""The token estimate: the fast count must equal the regex it replaces, for any text."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.tokens import _TOKEN, count_text, estimate_prompt


def reference(text: str) -> int:
    """The rule as the module states it: its words (the regex: words, numbers, single marks, CJK
    characters) or a quarter of the UTF-8 bytes of its non-space characters, whichever is larger."""
    return max(len(_TOKEN.findall(text)), sum(len(run.encode("utf-8", "surrogatepass")) for run in text.split()) // 4)


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


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Zs", "Cc"]), min_size=1), max_size=8))
def test_no_run_of_text_counts_under_a_token_per_4_bytes(runs):
    text = " ".join(runs)
    assert count_text(text) >= sum(len(r.encode("utf-8", "surrogatepass")) // 4 for r in text.split())


def test_a_100kb_blob_without_spaces_is_about_25000_tokens():
    blob = "9f" * 50_000
    assert count_text(blob) == 25_000
    assert estimate_prompt({"messages": [{"role": "user", "content": blob}]}) >= 25_000


def test_prompt_estimate_adds_framing_per_message():
    body = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]}
    assert estimate_prompt(body) == 3 + (4 + 3) + (4 + 2)
