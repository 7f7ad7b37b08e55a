"""One input row of `factory verify` -> the Trace the verifiers judge (or why it cannot be one).

A row holds `problem` and `completion`, or chat `messages` whose last assistant turn is the
completion; `reference` (math) or `tests` (code); optionally finish_reason, num_tokens, error,
reasoning. A `reasoning` value that does not occur in the completion is reasoning the engine
split off: it goes back as the completion's reasoning_content, as at generation time.
"""

from __future__ import annotations

import json
from typing import Any

from factory.types import Completion, Prompt, Trace
from factory.verifiers.parsing import make_trace


def _text(v: Any) -> str | None:
    if v is None:
        return None
    return v if isinstance(v, str) else str(v)


def reference_of(row: dict[str, Any]) -> str | None:
    v = row.get("reference")
    if v is None:
        v = row.get("tests")
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    return json.dumps(v, sort_keys=True)  # code tests ({"inputs": [...], "outputs": [...]})


def split_messages(messages: Any) -> tuple[list[dict[str, str]], str | None]:
    """(the messages before the last assistant turn, that turn's content)."""
    if not isinstance(messages, list):
        return [], None
    msgs = [m for m in messages if isinstance(m, dict)]
    for i in range(len(msgs) - 1, -1, -1):
        if msgs[i].get("role") == "assistant":
            return [{"role": str(m.get("role")), "content": _text(m.get("content")) or ""} for m in msgs[:i]], \
                _text(msgs[i].get("content"))
    return [{"role": str(m.get("role")), "content": _text(m.get("content")) or ""} for m in msgs], None


def problem_of(row: dict[str, Any], before: list[dict[str, str]]) -> str | None:
    """The `problem` column; without one, the last user message (it may hold the prompt template)."""
    if "problem" in row:
        return _text(row["problem"])
    users = [m["content"] for m in before if m["role"] == "user"]
    return users[-1] if users else None


def row_trace(row: dict[str, Any], prompt_id: str, sample_index: int, index: int,
              extraction: str) -> Trace | str:
    """A Trace for one input row, or the input reason it cannot be verified."""
    before, assistant = split_messages(row.get("messages"))
    problem = problem_of(row, before)
    if problem is None or not problem.strip():
        return "missing_problem"
    text = _text(row.get("completion"))
    if text is None:
        text = assistant
    if text is None:
        return "missing_completion"
    reasoning = _text(row.get("reasoning"))
    # A version row whose engine split the reasoning off stores it apart from the completion;
    # handing it back keeps the think-format check and the answer split as they were.
    reasoning_content = reasoning if reasoning and reasoning.strip() and reasoning.strip() not in text else None
    messages = [m for m in before if m["role"] != "assistant"] or [{"role": "user", "content": problem}]
    prompt = Prompt(prompt_id, index, problem, reference_of(row), messages, _text(row.get("source")) or "")
    num_tokens = row.get("num_tokens")
    completion = Completion(
        prompt_id, sample_index, text,
        _text(row.get("finish_reason")),  # type: ignore[arg-type]  # None: unknown, not invented
        prompt_tokens=int(row.get("prompt_tokens") or 0), num_tokens=int(num_tokens or 0),
        reasoning_content=reasoning_content, error=_text(row.get("error")),
        aborted_by=_aborted_by(row),
    )
    return make_trace(prompt, completion, extraction)


def _aborted_by(row: dict[str, Any]) -> str | None:
    """The early-abort detector named by a row's leading `{name, reason: aborted}` verdict."""
    if row.get("finish_reason") != "abort":
        return None
    for v in row.get("verdicts") or []:
        if isinstance(v, dict) and v.get("reason") == "aborted" and v.get("name") != "truncation":
            return _text(v.get("name"))
    return None
