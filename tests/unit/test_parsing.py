"""Trace parsing: think-tag splitting and final-answer extraction."""

from __future__ import annotations

import os
import time

import pytest

from factory.verifiers.parsing import EXTRACTION_MODES, extract_answer, make_trace, split_reasoning
from factory.types import Completion, Prompt


def _prompt() -> Prompt:
    return Prompt(
        prompt_id="p1",
        index=0,
        problem="What is 1+1?",
        reference="2",
        messages=[{"role": "user", "content": "What is 1+1?"}],
        source="test",
    )


# --- split_reasoning -------------------------------------------------------------------------

SPLIT_CASES = [
    # (text, reasoning_content, expected (reasoning, answer, has_tags, balanced))
    # a well-formed pair: reasoning inside, answer after
    ("<think>\nadd them\n</think>\n\nThe answer is \\boxed{2}.", None,
     ("add them", "The answer is \\boxed{2}.", True, True)),
    # R1 distills: the chat template wrote `<think>` into the prompt, only the close is generated
    ("add them\n</think>\n\\boxed{2}", None, ("add them", "\\boxed{2}", True, True)),
    # cut off while thinking: all reasoning, no visible answer
    ("<think>\nadd them, \\boxed{2} maybe", None, ("add them, \\boxed{2} maybe", "", True, False)),
    # no tags: the text is both the reasoning and the answer (so \boxed{} is still found)
    ("1+1 = \\boxed{2}", None, ("1+1 = \\boxed{2}", "1+1 = \\boxed{2}", False, False)),
    # two pairs: split at the last close, flagged unbalanced
    ("<think>a</think>b<think>c</think>\\boxed{2}", None,
     ("a</think>b<think>c", "\\boxed{2}", True, False)),
    # a close before the open
    ("x</think>y<think>z", None, ("x", "y<think>z", True, False)),
    # the engine separated the reasoning: trust it
    ("\\boxed{2}", "add them", ("add them", "\\boxed{2}", True, True)),
    # ... but tags left in the visible part mean a disagreement
    ("</think>\\boxed{2}", "add them", ("add them", "</think>\\boxed{2}", True, False)),
    # the engine separated nothing
    ("\\boxed{2}", "", ("", "\\boxed{2}", False, True)),
    ("", None, ("", "", False, False)),
]


@pytest.mark.parametrize(("text", "rc", "expected"), SPLIT_CASES)
def test_split_reasoning(text: str, rc: str | None, expected: tuple) -> None:
    assert split_reasoning(text, rc) == expected


# --- extract_answer --------------------------------------------------------------------------

EXTRACT_CASES = [
    # (text, mode, expected)
    # "final" (the default): every box of the final answer, a later "final answer is" statement
    ("\\boxed{1}, \\boxed{2} and \\boxed{3}", "final", "1, 2, 3"),
    ("\\boxed{(2,2)} \\text{and} \\boxed{(6,2)}", "final", "(2,2), (6,2)"),
    ("\\[ \\boxed{-2} \\quad \\text{and} \\quad \\boxed{1}. \\]", "final", "-2, 1"),
    ("first \\boxed{1}, then after a long detour we find \\boxed{2}", "final", "2"),  # a step, then the answer
    ("\\boxed{3} \\boxed{3}", "final", "3"),
    ("so \\boxed{5}. Wait: the final answer is $10,455$.", "final", "10,455"),
    ("the answer is \\boxed{7}.", "final", "7"),
    ("Final Answer: The largest $n$ is 34.", "final", None),  # prose: math-verify's to read
    ("The final answer is $12$ and $13$.", "final", "12, 13"),
    ("no answer here", "final", None),
    ("so \\boxed{42}.", "boxed", "42"),
    ("first \\boxed{1} then \\boxed{2}", "boxed", "2"),  # the last box is the final answer
    ("\\boxed{\\frac{1}{2}}", "boxed", "\\frac{1}{2}"),  # nested braces
    ("\\boxed{\\{1, 2\\}}", "boxed", "\\{1, 2\\}"),  # escaped braces are not grouping
    ("\\fbox{7}", "boxed", "7"),
    ("\\boxed {  x+1 }", "boxed", "x+1"),
    ("\\boxed 5 is it", "boxed", "5"),
    ("\\boxed{1} and \\boxed{\\frac{1}{2}", "boxed", None),  # last box never closes
    ("\\boxed{}", "boxed", None),
    ("no box here", "boxed", None),
    ("\\boxed{\\boxed{3}}", "boxed", "3"),
    ("So the answer is $\\frac{1}{2}$.", "answer_is", "\\frac{1}{2}"),
    ("The final answer is 12. Done", "answer_is", "12"),
    ("The answer is 3.5.", "answer_is", "3.5"),
    ("Answer: 7\nmore", "answer_is", "7"),
    ("The answer is:\n\n$$42$$", "answer_is", "42"),
    ("the answer is 1; later the answer is **9**", "answer_is", "9"),
    ("The answer is \\boxed{4}.", "answer_is", "4"),
    ("nothing", "answer_is", None),
    ("\\boxed{5} and the answer is 6", "boxed_or_answer_is", "5"),
    ("the answer is 6", "boxed_or_answer_is", "6"),
    ("x = 3, then 4.5 and finally -12", "last_number", "-12"),
    ("so 1/2", "last_number", "1/2"),
    ("total 1,234 apples", "last_number", "1234"),
    ("gives \\frac{3}{4}", "last_number", "\\frac{3}{4}"),
    ("no digits", "last_number", None),
    ("", "boxed", None),
]


@pytest.mark.parametrize(("text", "mode", "expected"), EXTRACT_CASES)
def test_extract_answer(text: str, mode: str, expected: str | None) -> None:
    assert extract_answer(text, mode) == expected


def test_every_mode_is_tested_and_unknown_mode_fails() -> None:
    assert {m for _, m, _ in EXTRACT_CASES} == set(EXTRACTION_MODES)
    with pytest.raises(ValueError, match="boxed_or_answer_is"):
        extract_answer("x", "nope")


@pytest.mark.parametrize("mode", EXTRACTION_MODES)
def test_extraction_is_fast_on_huge_and_garbage_inputs(mode: str) -> None:
    rng_bytes = os.urandom(100_000)
    inputs = [
        "{" * 100_000,  # unclosed groups
        "\\boxed{" + "{" * 99_990,
        "\\boxed{" * 14_000,
        "1" * 100_000,
        "the answer is " * 7_000,
        "1/" * 50_000,
        rng_bytes.decode("latin-1"),
        rng_bytes.decode("utf-8", errors="replace"),
        ("word " * 20_000) + "\\boxed{8}",
    ]
    start = time.perf_counter()
    for text in inputs:
        extract_answer(text, mode)
    assert time.perf_counter() - start < 2.0
    if mode in ("boxed", "boxed_or_answer_is"):
        assert extract_answer(inputs[-1], mode) == "8"
        assert extract_answer(inputs[1], mode) is None


# --- make_trace ------------------------------------------------------------------------------


def test_make_trace_extracts_from_the_answer_not_the_reasoning() -> None:
    c = Completion("p1", 3, "<think>maybe \\boxed{3}</think>\nSo \\boxed{2}.", "stop", 5, 20)
    t = make_trace(_prompt(), c)
    assert (t.reasoning, t.answer_text) == ("maybe \\boxed{3}", "So \\boxed{2}.")
    assert t.extracted_answer == "2"
    assert t.has_think_tags and t.think_tags_balanced
    assert t.completion is c and t.prompt.prompt_id == "p1"


def test_make_trace_truncated_inside_thinking_has_no_answer() -> None:
    c = Completion("p1", 0, "<think>maybe \\boxed{3}", "length")
    t = make_trace(_prompt(), c)
    assert t.answer_text == "" and t.extracted_answer is None
    assert t.has_think_tags and not t.think_tags_balanced


def test_make_trace_uses_engine_reasoning_and_mode() -> None:
    c = Completion("p1", 0, "The answer is 2.", "stop", reasoning_content="1+1")
    t = make_trace(_prompt(), c, extraction="answer_is")
    assert (t.reasoning, t.extracted_answer) == ("1+1", "2")
    assert make_trace(_prompt(), c, extraction="boxed").extracted_answer is None
