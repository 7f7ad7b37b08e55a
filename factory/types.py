"""The records that flow through a run: Prompt -> Completion -> Trace -> Verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Prompt:
    """One problem, ready to be sent to the teacher."""

    prompt_id: str  # stable: content hash, or the source's id column
    index: int  # position in the (filtered, shuffled) prompt set; fixes output order
    problem: str
    reference: str | None  # the answer (math) or serialized tests (code)
    messages: list[dict[str, str]]  # chat messages sent to the teacher
    source: str  # where the row came from, e.g. "builtin:arithmetic" or "org/name@rev"
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Completion:
    """One sample the teacher wrote for one prompt."""

    prompt_id: str
    sample_index: int
    text: str
    finish_reason: str  # "stop" | "length" | "abort" (an early-abort detector fired) | "error"
    prompt_tokens: int = 0
    num_tokens: int = 0
    reasoning_content: str | None = None  # when the engine separates reasoning itself
    error: str | None = None  # a per-request failure, kept as data (never fatal)
    aborted_by: str | None = None  # the early-abort detector that stopped it (finish_reason "abort")


@dataclass(slots=True, frozen=True)
class Verdict:
    """One verifier's judgement of one trace. passed=None means "could not tell"."""

    name: str
    passed: bool | None
    reason: str | None = None


@dataclass(slots=True)
class Trace:
    """A completion parsed against its prompt: what the verifiers look at."""

    prompt: Prompt
    completion: Completion
    reasoning: str
    answer_text: str  # what follows the reasoning (the visible answer)
    has_think_tags: bool
    think_tags_balanced: bool
    extracted_answer: str | None = None
    extraction: str | None = None  # how extracted_answer was found: "boxed", "boxes", "answer_is"...
