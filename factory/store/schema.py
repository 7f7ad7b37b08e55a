"""The dataset contract: the columns of configs `default` (accepted traces) and `all` (everything).

`default` is ready for TRL's SFTTrainer: `messages` holds the user turn(s) then the assistant turn,
each piece of text once: `<think>\\n{reasoning}\\n</think>\\n\\n{answer}` when the teacher wrote a
reasoning block, else the completion as written (and `reasoning` is "").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

from factory.types import Trace, Verdict

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
VERDICT = pa.struct([("name", pa.string()), ("passed", pa.bool_()), ("reason", pa.string())])

DEFAULT_FIELDS: list[pa.Field] = [
    pa.field("messages", pa.list_(MESSAGE)),
    pa.field("prompt_id", pa.string()),
    pa.field("sample_index", pa.int32()),
    pa.field("problem", pa.string()),
    pa.field("reference", pa.string()),
    pa.field("reasoning", pa.string()),
    pa.field("completion", pa.string()),
    pa.field("extracted_answer", pa.string()),
    pa.field("finish_reason", pa.string()),
    pa.field("num_tokens", pa.int32()),
    pa.field("source", pa.string()),
    pa.field("pass_rate", pa.float64()),
]
ALL_EXTRA_FIELDS: list[pa.Field] = [
    pa.field("prompt_index", pa.int64()),  # order in the prompt set; outputs are sorted by it
    pa.field("prompt_tokens", pa.int32()),
    pa.field("accepted", pa.bool_()),
    pa.field("reject_reason", pa.string()),  # "<verifier>:<reason>" of the first failed verdict
    pa.field("verdicts", pa.list_(VERDICT)),
    pa.field("error", pa.string()),
    pa.field("metadata", pa.string()),  # the source row's extra columns, as JSON
]
DEFAULT_SCHEMA = pa.schema(DEFAULT_FIELDS)
ALL_SCHEMA = pa.schema(DEFAULT_FIELDS + ALL_EXTRA_FIELDS)
# Parts hold `all` rows without pass_rate (known only once every sample of a prompt is in).
PART_SCHEMA = pa.schema([f for f in ALL_SCHEMA if f.name != "pass_rate"])


def assistant_content(reasoning: str, answer_text: str) -> str:
    """The assistant turn. No reasoning block: the answer text alone, never wrapped as a fake one."""
    if not reasoning.strip():
        return answer_text.strip()
    return f"<think>\n{reasoning.strip()}\n</think>\n\n{answer_text.strip()}"


def row_reasoning(trace: Trace) -> str:
    """The reasoning a row stores: the think block, or "" when the teacher wrote none. A trace
    parsed without tags carries its whole text as reasoning (so the extractor sees it); storing it
    would put the text in the row twice."""
    return trace.reasoning if trace.has_think_tags else ""


def is_doubled(content: str | None) -> bool:
    """An assistant turn written the doubled way (`<think>\nX\n</think>\n\nX`) by factory versions before
    this fix: the whole completion once as reasoning and once as answer."""
    if not content or not content.startswith("<think>\n"):
        return False
    body = content[len("<think>\n"):]
    head, sep, tail = body.partition("\n</think>\n\n")
    return bool(sep) and bool(head.strip()) and head == tail


def count_doubled(messages_column: Iterable[Any]) -> int:
    """How many rows' last assistant turn is doubled; `messages_column` holds each row's messages."""
    n = 0
    for messages in messages_column:
        turns = [m for m in (messages or []) if isinstance(m, dict) and m.get("role") == "assistant"]
        n += bool(turns) and is_doubled(turns[-1].get("content"))
    return n


_EXTRACTION_LABEL = re.compile(r" \((?:boxed|boxes|answer_is|whole_text|math_verify|last_number)\)$")


def decide(verdicts: Sequence[Verdict], advisory: frozenset[str] = frozenset()) -> tuple[bool, str | None]:
    """A trace is accepted only if every verdict passed; otherwise the first non-pass names why.

    "Cannot tell" (passed=None) is never acceptance: an unparseable reference must not let an
    unchecked trace into `default`. Advisory verdicts (by name) are recorded, never decisive.
    """
    for v in verdicts:
        if v.name in advisory:
            continue
        if v.passed is not True:
            reason = v.reason or ("unknown" if v.passed is None else "failed")
            # Rejects are counted by what went wrong; how the answer was found stays in `verdicts`.
            return False, f"{v.name}:{_EXTRACTION_LABEL.sub('', reason)}"
    return True, None


def trace_row(trace: Trace, verdicts: Sequence[Verdict], advisory: frozenset[str] = frozenset()) -> dict[str, Any]:
    """One `all` row (PART_SCHEMA) for a verified trace."""
    p, c = trace.prompt, trace.completion
    accepted, reject_reason = decide(verdicts, advisory)
    reasoning = row_reasoning(trace)
    answer_text = trace.answer_text if trace.has_think_tags else (c.text or "")
    messages = [dict(m) for m in p.messages if m["role"] != "system"] + [
        {"role": "assistant", "content": assistant_content(reasoning, answer_text)}
    ]
    return {
        "messages": messages,
        "prompt_id": p.prompt_id,
        "sample_index": c.sample_index,
        "problem": p.problem,
        "reference": p.reference,
        "reasoning": reasoning,
        "completion": c.text,
        "extracted_answer": trace.extracted_answer,
        "finish_reason": c.finish_reason,
        "num_tokens": c.num_tokens,
        "source": p.source,
        "prompt_index": p.index,
        "prompt_tokens": c.prompt_tokens,
        "accepted": accepted,
        "reject_reason": reject_reason,
        "verdicts": [{"name": v.name, "passed": v.passed, "reason": v.reason} for v in verdicts],
        "error": c.error,
        "metadata": json.dumps(p.metadata, sort_keys=True, default=str) if p.metadata else None,
    }
