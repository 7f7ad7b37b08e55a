"""Cheap shape checks that run before the expensive verifiers: truncation, think tags, an answer."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

from factory.types import Trace, Verdict
from factory.verifiers.base import VERIFIERS, Verifier

_ERROR_KIND = re.compile(r"[A-Za-z_][\w.]{0,63}")


def error_kind(error: str | None) -> str | None:
    """"TimeoutError: request took too long" -> "TimeoutError": a short, countable reason."""
    if not error:
        return None
    m = _ERROR_KIND.match(error.strip())
    return m.group(0) if m else None


@VERIFIERS.register("truncation")
class TruncationVerifier(Verifier):
    """A trace cut off by max_tokens or by early abort, or failed in the engine, is not a finished
    solution."""

    def verify(self, trace: Trace) -> Verdict:
        c = trace.completion
        if c.finish_reason == "length":
            return self.verdict(False, "truncated")
        if c.finish_reason == "abort":  # an early-abort detector stopped it (sampling.early_abort)
            return self.verdict(False, "aborted")
        if c.finish_reason == "error":
            kind = error_kind(c.error)
            return self.verdict(False, f"engine_error:{kind}" if kind else "engine_error")
        return self.verdict(True, None)


@VERIFIERS.register("think_format")
class ThinkFormatVerifier(Verifier):
    """For teachers that think in `<think>` tags (context["expects_think_tags"]): the tags must
    be there, once, and closed. For other teachers the check does not apply and passes."""

    def verify(self, trace: Trace) -> Verdict:
        if not self.context.get("expects_think_tags"):
            return self.verdict(True, "not_expected")
        if not trace.has_think_tags:
            return self.verdict(False, "missing_think")
        if not trace.think_tags_balanced:
            return self.verdict(False, "unbalanced_think")
        return self.verdict(True, None)


class NonemptyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Math needs an extracted final answer; code and free-form sets (no \boxed{}) set this False.
    require_extracted: bool = True


@VERIFIERS.register("nonempty_answer")
class NonemptyAnswerVerifier(Verifier):
    Params = NonemptyParams

    def verify(self, trace: Trace) -> Verdict:
        if not trace.answer_text.strip():
            return self.verdict(False, "empty_answer")
        extracted = trace.extracted_answer
        if extracted is not None and not extracted.strip():
            return self.verdict(False, "empty_answer")
        if extracted is None and self.params.require_extracted:  # type: ignore[attr-defined]
            return self.verdict(False, "empty_answer")
        return self.verdict(True, None)
