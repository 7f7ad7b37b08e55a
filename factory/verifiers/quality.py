"""Quality filters for what the teacher wrote: repetition loops, language mixing, length.

These look only at the completion text (never at the reference), run in linear time on a
100k-character completion, and return stable, machine-readable reasons:

- repetition: "repetition_loop" (too many repeated n-grams anywhere) or "repetition_tail" (the text
  ends in one unit repeated over and over: the classic small-teacher loop that runs to max_tokens).
- language: "language_mixing" (too many letters outside the allowed scripts: R1's Chinese mixing).
- length: "too_short" / "too_long", or passed=None "num_tokens_unknown" when token bounds are set
  but the engine reported no token count.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from factory.degeneration import RepetitionRule
from factory.types import Trace, Verdict
from factory.verifiers.base import VERIFIERS, Verifier


def completion_text(trace: Trace) -> str:
    """Everything the teacher wrote: the engine's separate reasoning (if any) plus the text.

    Read from the Completion rather than trace.reasoning/answer_text so that how a parser splits
    the text can never make a verifier see a part twice (which would double every n-gram).
    """
    c = trace.completion
    if c.reasoning_content:
        return f"{c.reasoning_content}\n{c.text}"
    return c.text


# --------------------------------------------------------------------------------------------
# repetition


class RepetitionParams(RepetitionRule):
    """The rules live in factory/degeneration.py, shared with the engines' early abort."""


@VERIFIERS.register("repetition")
class RepetitionVerifier(Verifier):
    """Rejects degenerate repetition: "repetition_tail" first (cheap, certain), then n-grams."""

    Params = RepetitionParams
    params: RepetitionParams

    def verify(self, trace: Trace) -> Verdict:
        reason = self.params.check(completion_text(trace))
        return self.verdict(reason is None, reason)


# --------------------------------------------------------------------------------------------
# language

# Unicode character-name prefixes -> script, for the names whose first word is not the script.
_NAME_PREFIX_SCRIPT = {
    "CJK": "Han",
    "IDEOGRAPHIC": "Han",
    "KANGXI": "Han",
    "FULLWIDTH LATIN": "Latin",
    "HALFWIDTH KATAKANA": "Katakana",
    "HALFWIDTH HANGUL": "Hangul",
    "MODIFIER LETTER": "Common",
    "SUPERSCRIPT LATIN": "Latin",
    "SUBSCRIPT LATIN": "Latin",
}
# Letters used as math symbols, whatever their name says (ℝ, ℓ, ℏ, 𝑥, 𝔽 ...): not a language.
_COMMON_LETTER_RANGES = ((0x2100, 0x214F), (0x1D400, 0x1D7FF))
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")


@lru_cache(maxsize=65536)
def script_of(ch: str) -> str:
    """The script of a letter, from its Unicode name ("LATIN SMALL LETTER A" -> "Latin").

    Python's unicodedata has no script property; the name's leading word is the script for all
    the scripts that matter here, with the exceptions listed in _NAME_PREFIX_SCRIPT.
    """
    cp = ord(ch)
    if any(lo <= cp <= hi for lo, hi in _COMMON_LETTER_RANGES):
        return "Common"
    name = unicodedata.name(ch, "")
    if not name:
        return "Unknown"
    for prefix, script in _NAME_PREFIX_SCRIPT.items():
        if name.startswith(prefix):
            return script
    return name.split(" ", 1)[0].title()


def foreign_letter_share(text: str, allowed: frozenset[str]) -> tuple[float, int]:
    """Share of letters whose script (lower-cased) is not in `allowed`, and the letter count.

    Only letters count: digits, punctuation, math operators and whitespace carry no language.
    LaTeX command names (\\frac, \\sqrt) are dropped first so they neither dilute nor count;
    what is inside \\text{...} stays, since that is prose.
    """
    counts = Counter(_LATEX_COMMAND.sub(" ", text))  # count once per distinct char: C speed
    letters = foreign = 0
    for ch, k in counts.items():
        if not ch.isalpha():
            continue
        letters += k
        if script_of(ch).lower() not in allowed:
            foreign += k
    return (foreign / letters if letters else 0.0), letters


class LanguageParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Greek is allowed by default: it is the alphabet of math (π, θ, Δ), not language mixing.
    allowed_scripts: list[str] = Field(default_factory=lambda: ["Latin", "Greek", "Common"])
    # Han carries a word or more per character, so even 1% of letters is a sentence or two.
    max_foreign_ratio: float = Field(default=0.01, ge=0, lt=1)

    @field_validator("allowed_scripts")
    @classmethod
    def _not_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("allowed_scripts must name at least one script, e.g. [Latin, Common]")
        return v


@VERIFIERS.register("language")
class LanguageVerifier(Verifier):
    Params = LanguageParams
    params: LanguageParams

    def verify(self, trace: Trace) -> Verdict:
        allowed = frozenset(s.lower() for s in self.params.allowed_scripts)
        share, _ = foreign_letter_share(completion_text(trace), allowed)
        if share > self.params.max_foreign_ratio:
            return self.verdict(False, "language_mixing")
        return self.verdict(True)


# --------------------------------------------------------------------------------------------
# length


class LengthParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_tokens: int = Field(default=0, ge=0)
    max_tokens: int | None = Field(default=None, ge=1)
    min_chars: int = Field(default=1, ge=0)  # an empty completion is never a trace
    max_chars: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "LengthParams":
        if self.max_tokens is not None and self.max_tokens < self.min_tokens:
            raise ValueError(f"max_tokens ({self.max_tokens}) is below min_tokens ({self.min_tokens})")
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError(f"max_chars ({self.max_chars}) is below min_chars ({self.min_chars})")
        return self


@VERIFIERS.register("length")
class LengthVerifier(Verifier):
    Params = LengthParams
    params: LengthParams

    def verify(self, trace: Trace) -> Verdict:
        p = self.params
        text = completion_text(trace)
        chars = len(text.strip())
        if chars < p.min_chars:
            return self.verdict(False, "too_short")
        if p.max_chars is not None and chars > p.max_chars:
            return self.verdict(False, "too_long")
        if p.min_tokens == 0 and p.max_tokens is None:
            return self.verdict(True)
        tokens = trace.completion.num_tokens
        if tokens <= 0 and chars > 0:
            # The engine did not count tokens; guessing would silently change the filter.
            return self.verdict(None, "num_tokens_unknown")
        if tokens < p.min_tokens:
            return self.verdict(False, "too_short")
        if p.max_tokens is not None and tokens > p.max_tokens:
            return self.verdict(False, "too_long")
        return self.verdict(True)
