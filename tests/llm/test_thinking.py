"""`<think>…</think>` found in streamed text, whatever the pieces (llm/thinking.py)."""

from __future__ import annotations

import itertools

import pytest

from conversations.llm.thinking import ThinkSplitter


def _run(pieces: list[str]) -> tuple[str, str, int]:
    """(answer, reasoning, rethinks) as a consumer of the splits would hold them."""
    splitter = ThinkSplitter()
    answer = reasoning = ""
    rethinks = 0
    for piece in pieces:
        split = splitter.feed(piece)
        if split.rethink:
            rethinks += 1
            reasoning, answer = reasoning + answer, ""
        answer += split.answer
        reasoning += split.reasoning
    end = splitter.flush()
    return answer + end.answer, reasoning + end.reasoning, rethinks


CASES = [
    # (text, answer, reasoning, rethinks)
    ("<think>Let me see.</think>\n\nThe answer is 4.", "The answer is 4.", "Let me see.", 0),
    ("  \n<think>\nhmm\n</think>Four.", "Four.", "\nhmm\n", 0),
    ("Okay, 2+2.\n</think>\n\nIt is 4.", "It is 4.", "Okay, 2+2.\n", 1),
    ("No reasoning here, a < b and <thin.", "No reasoning here, a < b and <thin.", "", 0),
    ("<think>unfinished thought", "", "unfinished thought", 0),
    (
        "Answer first. <think>not a tag here</think> more",
        "more",
        "Answer first. <think>not a tag here",
        1,
    ),
    ("<think>a</think>b</think>c", "b</think>c", "a", 0),
    ("", "", "", 0),
    ("<thi", "<thi", "", 0),
]


@pytest.mark.parametrize(("text", "answer", "reasoning", "rethinks"), CASES)
def test_every_split_into_two_and_three_pieces_gives_the_same(text, answer, reasoning, rethinks):
    assert _run([text]) == (answer, reasoning, rethinks)
    for cut in range(len(text) + 1):
        assert _run([text[:cut], text[cut:]]) == (answer, reasoning, rethinks), cut
    for a, b in itertools.combinations(range(len(text) + 1), 2):
        assert _run([text[:a], text[a:b], text[b:]]) == (answer, reasoning, rethinks), (a, b)


@pytest.mark.parametrize(("text", "answer", "reasoning", "rethinks"), CASES)
def test_one_character_at_a_time(text, answer, reasoning, rethinks):
    assert _run(list(text)) == (answer, reasoning, rethinks)


def test_reasoning_streams_before_its_closing_tag_and_answer_after():
    splitter = ThinkSplitter()
    assert splitter.feed("<think>Step one. ").reasoning == "Step one. "
    # "</thi" might be the closing tag: held back, not shown as reasoning yet.
    assert splitter.feed("Step two.</thi").reasoning == "Step two."
    split = splitter.feed("nk>\n\nDone")
    assert (split.reasoning, split.answer) == ("", "Done")


def test_a_long_text_is_read_piece_by_piece_without_rescanning():
    splitter = ThinkSplitter()
    splitter.feed("<think>")
    for _ in range(20_000):
        assert splitter.feed("word ").reasoning == "word "
    assert splitter._pending == ""


def test_reasoning_from_the_server_makes_the_text_an_answer():
    splitter = ThinkSplitter()
    splitter.no_rethink()
    split = splitter.feed("It is 4.</think> really")
    assert (split.answer, split.reasoning, split.rethink) == ("It is 4.</think> really", "", False)
