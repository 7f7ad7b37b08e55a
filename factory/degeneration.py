"""Degenerate generations: one definition for the engines' early abort and the `repetition` verifier.

A small teacher (and, at long budgets, a large one) can fall into a loop and write the same unit
until `max_tokens`. Such a trace is always rejected, and it is the longest of its run. The same
rules judge it in two places, so that the online and offline verdicts agree:

- offline, the `repetition` verifier (factory/verifiers/quality.py) calls `RepetitionRule.check`
  on the finished text;
- online, an engine feeds the text of a running request to an `AbortWatch` every
  `early_abort.every_tokens` tokens and aborts the request when a rule fires: its partial text is
  kept as a row with `finish_reason: abort` and the reject reason `<detector>:aborted`.

The rules:

- `repetition_tail`: the text ends in one unit repeated back to back (`tail_loop`);
- `repetition_loop`: the share of word n-grams that occurred before is above a bar
  (`duplicate_ngram_ratio`), judged only once there are enough n-grams to mean something;
- `think_budget` (online only): no `</think>` after N tokens, for teachers that think in tags.

Online checks cost little: `tail_loop` first asks C's `str.find` whether the last characters occur
earlier at all (a loop needs that; ordinary prose almost never has it), and `NgramCounter` adds only
the words written since the last check. `RepetitionRule.check` on the full text and an `AbortWatch`
fed the same text in any number of pieces give the same verdict (tests/unit/test_degeneration.py).

A low layer: it imports nothing of factory's, so engines, verifiers and the config may all use it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

THINK_END = "</think>"


# --------------------------------------------------------------------------------------------
# the two measures


def duplicate_ngram_ratio(units: list[str] | str, n: int) -> tuple[float, int]:
    """Share of n-gram positions whose n-gram already occurred earlier, and the n-gram count.

    `units` is a list of words or a string (characters). One pass with a set: linear time.
    """
    total = len(units) - n + 1
    if total <= 0:
        return 0.0, 0
    if isinstance(units, str):
        grams = {units[i : i + n] for i in range(total)}
    else:
        # zip over shifted views builds the n-gram tuples in C.
        grams = set(zip(*(units[k:] for k in range(n))))
    return (total - len(grams)) / total, total


def _z_function(s: str) -> list[int]:
    """z[i] = length of the longest common prefix of s and s[i:] (z[0] = len(s)); O(len(s))."""
    n = len(s)
    z = [0] * n
    if n:
        z[0] = n
    left = right = 0
    for i in range(1, n):
        if i < right:
            z[i] = min(right - i, z[i - left])
        while i + z[i] < n and s[z[i]] == s[i + z[i]]:
            z[i] += 1
        if i + z[i] > right:
            left, right = i, i + z[i]
    return z


def tail_loop(text: str, window: int, min_repeats: int, min_chars: int) -> tuple[int, int] | None:
    """Find a unit that repeats back to back at the very end of `text`.

    Returns (period, run_length) of the shortest period p whose periodic run at the end spans at
    least `min_chars` characters and `min_repeats` periods, else None. Trailing whitespace is
    ignored; the last copy may be cut short (a completion stopped by max_tokens mid-loop).

    On the reversed tail r, z[p] says how far r agrees with itself shifted by p, so the run of
    period p ending at the end of the text is p + z[p] long: every period in one linear pass.
    """
    tail = text.rstrip()[-window:]
    if len(tail) < min_chars:
        return None
    # A qualifying run is at least p + g long with g below (run >= max(min_repeats * p, min_chars)),
    # so the last g characters occur again p characters earlier. When they occur nowhere else in
    # the window there is no loop: C's find says so in microseconds, and the Python pass below
    # (milliseconds on 8k characters) runs only for texts that repeat their own ending.
    g = max(1, min(64, min_chars * (min_repeats - 1) // min_repeats))
    if tail.find(tail[-g:], 0, len(tail) - 1) == -1:  # searched up to, not including, the last copy
        return None
    r = tail[::-1]
    z = _z_function(r)
    for p in range(1, len(r) // min_repeats + 1):
        run = p + z[p]
        if run >= min_chars and run >= p * min_repeats:
            return p, run
    return None


class NgramCounter:
    """`duplicate_ngram_ratio` over a text that grows: each call adds only the new words.

    `ratio(text)` equals `duplicate_ngram_ratio(text.split(), n)` for the text given (a growing
    prefix of one completion): complete words are added once to the seen set; the last word,
    which may still be growing, is looked at without being added.
    """

    def __init__(self, n: int):
        self.n = n
        self.seen: set[tuple[str, ...]] = set()
        self.words: list[str] = []  # complete words so far (only the last n-1 are needed)
        self.total = 0
        self.dups = 0
        self._done_chars = 0  # text[:_done_chars] is split into complete words already

    def ratio(self, text: str) -> tuple[float, int]:
        # Complete words end before whitespace; the last word is still being written unless the
        # text ends in whitespace. rsplit from the right costs the last word's length, not the text's.
        if not text or text[-1].isspace():
            cut, last = len(text), None
        else:
            last = text.rsplit(None, 1)[-1]
            cut = len(text) - len(last)
        if cut > self._done_chars:
            self._add(text[self._done_chars : cut].split())
            self._done_chars = cut
        total, dups = self.total, self.dups
        if last is not None:
            window = (self.words + [last])[-self.n :]
            if len(window) == self.n:
                total += 1
                dups += tuple(window) in self.seen
        return (dups / total if total > 0 else 0.0), total

    def _add(self, new: list[str]) -> None:
        n = self.n
        words = self.words + new
        start = max(0, len(self.words) - n + 1)
        for i in range(start, len(words) - n + 1):
            gram = tuple(words[i : i + n])
            self.total += 1
            if gram in self.seen:
                self.dups += 1
            else:
                self.seen.add(gram)
        self.words = words[-(n - 1) :] if n > 1 else []


# --------------------------------------------------------------------------------------------
# the rules, as config


class RepetitionRule(BaseModel):
    """Degenerate repetition: `repetition_tail` first (cheap, certain), then n-grams.

    The parameters of the `repetition` verifier and of `sampling.early_abort.repetition`.
    """

    model_config = ConfigDict(extra="forbid")

    unit: Literal["word", "char"] = "word"
    # n-gram size; default 10 words (Gopher's longest duplicate n-gram) or 50 characters.
    ngram: int | None = Field(default=None, ge=2)
    # Reasoning traces legitimately restate equations while checking, so the bar is far above
    # web-text filters (~0.1): a loop that fills half the text is what this is for.
    max_duplicate_ratio: float = Field(default=0.5, gt=0, le=1)
    # Below this many n-grams the ratio is noise: a short answer is judged by the tail check only.
    min_ngrams: int = Field(default=50, ge=1)
    tail_window: int = Field(default=8192, ge=16)  # characters from the end searched for a loop
    tail_min_repeats: int = Field(default=5, ge=2)
    # A run shorter than this is formatting ("=====", "| --- | --- |"), not a loop.
    tail_min_chars: int = Field(default=200, ge=1)

    def n(self) -> int:
        return self.ngram or (10 if self.unit == "word" else 50)

    def check_tail(self, text: str) -> bool:
        return tail_loop(text, self.tail_window, self.tail_min_repeats, self.tail_min_chars) is not None

    def loop_ratio_exceeded(self, ratio: float, total: int) -> bool:
        return total >= self.min_ngrams and ratio > self.max_duplicate_ratio

    def check(self, text: str) -> str | None:
        """"repetition_tail", "repetition_loop" or None, for a finished (or partial) text."""
        if self.check_tail(text):
            return "repetition_tail"
        units: list[str] | str = text.split() if self.unit == "word" else text
        if self.loop_ratio_exceeded(*duplicate_ngram_ratio(units, self.n())):
            return "repetition_loop"
        return None


class EarlyAbortConfig(BaseModel):
    """`sampling.early_abort`: stop a generation as soon as it is certain to be rejected.

    Each detector names the reject reason of the rows it aborts: `repetition:aborted`,
    `think_budget:aborted`.
    """

    model_config = ConfigDict(extra="forbid")

    # Look at a running sample after every this many new tokens. Smaller catches loops sooner;
    # each look costs microseconds (see the module docstring).
    every_tokens: int = Field(default=64, ge=1)
    # The `repetition` verifier's rules, on the text written so far; null turns it off. Keep them
    # the same as the verifier's (the defaults are) so that what is aborted is what it rejects.
    repetition: RepetitionRule | None = Field(default_factory=RepetitionRule)
    # Abort when the text has no `</think>` after this many tokens (teachers that think in tags:
    # a reasoning that long will not finish its answer inside max_tokens). null: off.
    think_budget: int | None = Field(default=None, ge=1)


def early_abort_detectors(cfg: EarlyAbortConfig) -> list[str]:
    """The detector names a config turns on (what reject reasons it can produce)."""
    return [name for name, on in (("repetition", cfg.repetition), ("think_budget", cfg.think_budget)) if on]


# --------------------------------------------------------------------------------------------
# online


class AbortWatch:
    """Watches one running sample. `update(text, tokens)` after each chunk; a detector name when
    the sample must be aborted, else None. Checks run once per `every_tokens` new tokens."""

    __slots__ = ("cfg", "_next", "_ngrams")

    def __init__(self, cfg: EarlyAbortConfig):
        self.cfg = cfg
        self._next = cfg.every_tokens
        rule = cfg.repetition
        self._ngrams = NgramCounter(rule.n()) if rule is not None and rule.unit == "word" else None

    def update(self, text: str, tokens: int) -> str | None:
        if not self.due(tokens):
            return None
        return self.check(text, tokens)

    def due(self, tokens: int) -> bool:
        """Whether a check is due at this token count (a caller may then build the text)."""
        return tokens >= self._next

    def check(self, text: str, tokens: int) -> str | None:
        """The detector that fires on `text` (the whole sample so far), or None."""
        self._next = tokens + self.cfg.every_tokens
        cfg = self.cfg
        budget = cfg.think_budget
        if budget is not None and tokens >= budget and THINK_END not in text:
            return "think_budget"
        rule = cfg.repetition
        if rule is None:
            return None
        if rule.check_tail(text):
            return "repetition"
        if self._ngrams is not None:
            ratio, total = self._ngrams.ratio(text)
        else:  # character n-grams: rare, and no incremental form is worth its code
            ratio, total = duplicate_ngram_ratio(text, rule.n())
        if rule.loop_ratio_exceeded(ratio, total):
            return "repetition"
        return None


def replay(cfg: EarlyAbortConfig, prefixes: list[tuple[str, int]]) -> str | None:
    """What an AbortWatch would have said over a finished sample, given its (text, tokens) so far
    at each chunk: the detector that would have aborted it, or None. For the false-abort count."""
    watch = AbortWatch(cfg)
    for text, tokens in prefixes:
        fired = watch.update(text, tokens)
        if fired:
            return fired
    return None
