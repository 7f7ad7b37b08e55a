"""Format verifiers: truncation, think tags, a non-empty answer."""

from __future__ import annotations

import pytest

from factory.verifiers.parsing import make_trace
from factory.types import Completion, Prompt
from factory.verifiers import VERIFIERS
from factory.verifiers.format import NonemptyParams, error_kind

PROMPT = Prompt("p", 0, "1+1?", "2", [{"role": "user", "content": "1+1?"}], "test")


def build(name: str, context: dict | None = None, **params):
    cls = VERIFIERS.get(name)
    return cls(cls.Params.model_validate(params), context or {})


def trace(text: str, finish: str = "stop", error: str | None = None, extraction: str = "boxed"):
    return make_trace(PROMPT, Completion("p", 0, text, finish, error=error), extraction)


def test_registered() -> None:
    assert {"truncation", "think_format", "nonempty_answer"} <= set(VERIFIERS.names())


@pytest.mark.parametrize(
    ("finish", "error", "passed", "reason"),
    [
        ("stop", None, True, None),
        ("length", None, False, "truncated"),  # cut off by max_tokens
        ("error", "TimeoutError: request took 600s", False, "engine_error:TimeoutError"),
        ("error", None, False, "engine_error"),  # no detail: still an engine error
        ("error", "  ", False, "engine_error"),
        ("abort", None, False, "aborted"),  # stopped by sampling.early_abort: cut short too
        ("content_filter", None, True, None),  # anything else is not a truncation
    ],
)
def test_truncation(finish: str, error: str | None, passed: bool, reason: str | None) -> None:
    v = build("truncation").verify(trace("\\boxed{2}", finish, error))
    assert (v.name, v.passed, v.reason) == ("truncation", passed, reason)


def test_error_kind() -> None:
    assert error_kind("vllm.EngineError: boom") == "vllm.EngineError"
    assert error_kind("!!!") is None


@pytest.mark.parametrize(
    ("text", "expects", "passed", "reason"),
    [
        ("<think>hm</think>\\boxed{2}", True, True, None),
        ("hm</think>\\boxed{2}", True, True, None),  # opening tag was in the chat template
        ("\\boxed{2}", True, False, "missing_think"),
        ("<think>hm \\boxed{2}", True, False, "unbalanced_think"),  # never closed
        ("<think>a</think><think>b</think>\\boxed{2}", True, False, "unbalanced_think"),
        ("\\boxed{2}", False, True, "not_expected"),  # a teacher without think tags
        ("<think>hm", False, True, "not_expected"),
    ],
)
def test_think_format(text: str, expects: bool, passed: bool, reason: str | None) -> None:
    v = build("think_format", {"expects_think_tags": expects}).verify(trace(text))
    assert (v.name, v.passed, v.reason) == ("think_format", passed, reason)


def test_think_format_without_context_is_not_expected() -> None:
    assert build("think_format").verify(trace("x")).reason == "not_expected"


@pytest.mark.parametrize(
    ("text", "require", "passed"),
    [
        ("<think>a</think>\\boxed{2}", True, True),
        ("<think>a</think>   ", True, False),  # nothing after the thinking
        ("<think>a \\boxed{2}", True, False),  # truncated inside thinking: no answer text
        ("<think>a</think>so two", True, False),  # text but no extracted answer
        ("<think>a</think>so two", False, True),  # ... fine where no extraction is expected
        ("<think>a</think>\\boxed{ }", False, True),  # empty box extracts as None
    ],
)
def test_nonempty_answer(text: str, require: bool, passed: bool) -> None:
    v = build("nonempty_answer", require_extracted=require).verify(trace(text))
    assert (v.name, v.passed, v.reason) == ("nonempty_answer", passed, None if passed else "empty_answer")


def test_nonempty_answer_rejects_blank_extraction() -> None:
    t = trace("<think>a</think>\\boxed{2}")
    t.extracted_answer = "  "
    assert build("nonempty_answer", require_extracted=False).verify(t).passed is False


def test_params_are_strict() -> None:
    with pytest.raises(ValueError):
        NonemptyParams.model_validate({"require": True})
