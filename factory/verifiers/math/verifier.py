"""The math verifier: the extracted answer against the reference, sympy work in a worker pool.

The comparison is tiered, cheapest first, and each tier decides only what it can decide for
sure: tiers 0-1 (guards.py) run here in the caller's thread, tiers 2-3 (compare.py) in worker
processes. See docs/verifiers.md for what is accepted and why.

Each verdict's reason names the extraction that found the answer: `correct (boxed)`,
`wrong_answer (boxes)` (several boxes read as one list), `(answer_is)` (a "final answer is"
statement), `(math_verify)` (no box and no statement: math-verify's extraction found it).
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from factory.types import Trace, Verdict
from factory.verifiers.base import VERIFIERS, Verifier
from factory.verifiers.math.parse import FALLBACK_CHARS
from factory.verifiers.math.guards import (
    _GARBAGE,
    decimal_comma,
    exact_number,
    has_percent,
    is_bare,
    numbers_verdict,
    prepare,
    too_complex,
    unmangle,
)
from factory.verifiers.parsing import DEFAULT_EXTRACTION, EXTRACTION_MODES, reference_answer
from factory.verifiers.pool import HardTimeoutPool

Extraction = Literal["final", "boxed", "answer_is", "boxed_or_answer_is", "last_number"]
assert set(Extraction.__args__) == set(EXTRACTION_MODES)  # type: ignore[attr-defined]

# "what percent", "as a percentage", "%": the problem asks for a percentage.
_ASKS_PERCENT = re.compile(r"percent|%", re.I)


class MathParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # CPU seconds per comparison (a worker's own time, so the same on an idle and a busy machine);
    # a worker still running after twice that on the wall clock is killed, and its pair retried
    # once alone before it is reported as `timeout` (cannot tell, never a wrong answer).
    timeout_s: float = Field(5.0, gt=0)
    workers: int | None = Field(None, ge=1)  # None: context["verify_workers"] or os.cpu_count()
    extraction: Extraction = DEFAULT_EXTRACTION  # how the runner fills Trace.extracted_answer
    # With the default extraction, a completion with no box and no "answer is" statement ("The
    # largest $n$ is 34."): let math-verify's own extraction find the answer (True), or reject it
    # as `no_answer`.
    prose_answers: bool = True
    numeric_precision: int = Field(30, ge=15, le=200)  # digits for evalf (math-verify: 15)
    float_rel_tol: float = Field(1e-4, gt=0, lt=1)  # a decimal vs an exact value, relative
    max_answer_chars: int = Field(1000, ge=1)


_CACHE_SIZE = 50_000
_WHOLE_TEXT_CHARS = 200  # a completion this short, on one line, with no box, is its own answer
_RETRY_WALL_FACTOR = 4.0  # the lone retry of a killed comparison gets this many timeout_s


class Job(NamedTuple):
    """A pair that passed the cheap tiers and needs sympy: prepared reference and answer (None:
    find it in `text`, the end of the completion)."""

    reference: str
    answer: str | None
    text: str | None = None


@VERIFIERS.register("math")
class MathVerifier(Verifier):
    Params = MathParams
    version = "2"
    needs_reference = True

    def __init__(self, params: BaseModel, context: dict[str, Any] | None = None):
        super().__init__(params, context)
        self.p: MathParams = params  # type: ignore[assignment]
        self._pool: Any = None
        self._lock = threading.Lock()  # guards the pool and the cache
        # Samples of one prompt often give the same answer; sympy work is the cost, not lookups.
        self._cache: OrderedDict[Job, tuple[bool | None, str]] = OrderedDict()
        self.retried = 0  # comparisons killed on the wall clock and run again alone

    @property
    def workers(self) -> int:
        return self.p.workers or int(self.context.get("verify_workers") or 0) or os.cpu_count() or 1

    def warm_up(self) -> None:
        # The runner calls this while the engines load, so the tail of a run never waits for
        # worker processes to import sympy.
        self._get_pool().start()

    def _get_pool(self) -> Any:
        with self._lock:
            if self._pool is None:
                self._pool = HardTimeoutPool(
                    "factory.verifiers.math.compare:check_pair",
                    workers=self.workers,
                    timeout_s=2 * self.p.timeout_s,  # wall clock; the CPU deadline comes first
                    initializer="factory.verifiers.math.compare:warm_worker",
                    max_tasks_per_worker=20_000,  # sympy's caches grow; recycle now and then
                )
            return self._pool

    def precheck(
        self, reference: str | None, answer: str | None, text: str | None = None, problem: str = ""
    ) -> tuple[bool | None, str] | Job:
        """Tiers 0-1 in the calling thread: a final (passed, reason), or a Job for the workers.
        `text` (the completion's answer part) is searched by math-verify when `answer` is None
        and prose answers are allowed."""
        if reference is None or not reference.strip():
            return None, "no_reference"
        reference = reference_answer(unmangle(reference))
        answer = unmangle(answer) if answer is not None else None
        if answer is None or not answer.strip():
            text = unmangle(text.strip()) if text else ""
            # Only the default extraction falls back: `boxed` asked for a box and gets no more.
            if not (self.p.prose_answers and self.p.extraction == "final" and text) or _GARBAGE.search(text):
                return False, "no_answer"
            if len(text) <= _WHOLE_TEXT_CHARS and "\n" not in text and is_bare(text):
                # A bare answer with nothing around it (`28 percent`, `x^2 + 2*x + 1`): the whole
                # text is the answer; math-verify's extraction still gets it if it does not parse.
                decided = self.precheck(reference, text, None, problem)
                if isinstance(decided, Job):
                    return decided._replace(text=text)
                return decided
            ref = prepare(reference)
            why = too_complex(ref) if ref else "unbalanced"
            if len(reference) > self.p.max_answer_chars:
                return None, "reference_too_long"
            if why == "unbalanced":
                return None, "unparseable_reference"
            if why:
                return None, "reference_too_complex"
            return Job(ref, None, text[-FALLBACK_CHARS:])
        limit = self.p.max_answer_chars
        if len(reference) > limit:
            return None, "reference_too_long"
        if len(answer) > limit:
            return None, "answer_too_long"
        if _GARBAGE.search(reference):
            return None, "unparseable_reference"
        if _GARBAGE.search(answer):
            return False, "unparseable_answer"
        ref, ans = prepare(reference), prepare(answer)
        if not ref:
            return None, "unparseable_reference"
        if not ans:
            return False, "no_answer"
        why = too_complex(ref)
        if why == "unbalanced":
            return None, "unparseable_reference"
        if why:
            return None, "reference_too_complex"
        why = too_complex(ans)
        if why == "unbalanced":
            return False, "unparseable_answer"
        if why:
            return None, "answer_too_complex"
        decided = self._numbers(reference, answer, ref, ans, problem)
        return decided if decided is not None else Job(ref, ans)

    def _numbers(
        self, reference: str, answer: str, ref: str, ans: str, problem: str
    ) -> tuple[bool | None, str] | None:
        """Tier 1: both sides plain numbers -> a final verdict; None: not plain numbers."""
        rnum, anum = exact_number(ref), exact_number(ans)
        # `1000,99` against 1000.99: a decimal comma, when the other side is a decimal.
        if rnum is not None and anum is None and rnum[1]:
            comma = decimal_comma(ans)
            anum = (comma, True) if comma is not None else None
        elif anum is not None and rnum is None and anum[1]:
            comma = decimal_comma(ref)
            rnum = (comma, True) if comma is not None else None
        if rnum is None or anum is None:
            return None
        tol = self.p.float_rel_tol
        if numbers_verdict(rnum, anum, tol):
            return True, "correct"
        # A percent against a plain number: the same number (a unit), or -- only when the problem
        # asks for a percentage -- the plain number as a fraction (28% for 0.28).
        rpct, apct = has_percent(reference), has_percent(answer)
        if rpct != apct and _ASKS_PERCENT.search(problem or ""):
            pct, plain = (rnum, anum) if rpct else (anum, rnum)
            if numbers_verdict((pct[0] / 100, pct[1]), plain, tol):
                return True, "correct"
        return False, "wrong_answer"

    def verify(self, trace: Trace) -> Verdict:
        return self.verify_many([trace])[0]

    def verify_many(self, traces: Sequence[Trace]) -> list[Verdict]:
        out: list[Verdict | None] = [None] * len(traces)
        jobs: dict[Job, list[int]] = {}  # identical pairs (samples of one prompt) go once
        for i, t in enumerate(traces):
            pre = self.precheck(t.prompt.reference, t.extracted_answer, t.answer_text, t.prompt.problem)
            if not isinstance(pre, Job):
                out[i] = self._verdict(t, *pre)
                continue
            with self._lock:
                cached = self._cache.get(pre)
                if cached is not None:
                    self._cache.move_to_end(pre)
            if cached is not None:
                out[i] = self._verdict(t, *cached)
            else:
                jobs.setdefault(pre, []).append(i)
        if jobs:
            for key, (passed, reason) in self._run(list(jobs)).items():
                if reason not in ("timeout", "verifier_error"):  # may go another way next time
                    with self._lock:
                        self._cache[key] = (passed, reason)
                        if len(self._cache) > _CACHE_SIZE:
                            self._cache.popitem(last=False)
                for i in jobs[key]:
                    out[i] = self._verdict(traces[i], passed, reason)
        return [v for v in out if v is not None]

    def _run(self, keys: list[Job]) -> dict[Job, tuple[bool | None, str]]:
        """The workers' verdicts; a comparison killed on the wall clock (the machine was busy,
        or sympy sat in C code) runs once more, alone on an idle pool, with a longer limit."""
        pool = self._get_pool()
        soft = self.p.timeout_s * 0.8

        def item(k: Job) -> tuple[Any, ...]:
            return (k.reference, k.answer, k.text, self.p.numeric_precision, self.p.float_rel_tol, soft)

        results: dict[Job, tuple[bool | None, str]] = {}
        killed: list[Job] = []
        for key, res in zip(keys, pool.map([item(k) for k in keys]), strict=True):
            if res.timed_out:
                killed.append(key)
            elif res.error is not None:
                results[key] = (None, "verifier_error")
            else:
                results[key] = res.value
        for key in killed:  # one at a time: nothing else runs beside it
            self.retried += 1
            (res,) = pool.map([item(key)], timeout_s=_RETRY_WALL_FACTOR * self.p.timeout_s)
            if res.timed_out:
                results[key] = (None, "timeout")
            elif res.error is not None:
                results[key] = (None, "verifier_error")
            else:
                results[key] = res.value
        return results

    def _verdict(self, trace: Trace, passed: bool | None, reason: str) -> Verdict:
        """The reason names the extraction: the trace's, `whole_text` for a bare short answer,
        or `math_verify` (set by the worker) when math-verify's extraction found it."""
        if "(" not in reason and reason not in ("no_reference", "no_answer"):
            how = trace.extraction
            if trace.extracted_answer is None and trace.answer_text.strip():
                how = "whole_text"  # the worker names math-verify's extraction itself
            if how:
                reason = f"{reason} ({how})"
        return self.verdict(passed, reason)

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import PackageNotFoundError, version

        info = super().describe()
        for pkg in ("math-verify", "sympy", "latex2sympy2_extended"):
            try:
                info[pkg.replace("-", "_")] = version(pkg)
            except PackageNotFoundError:
                info[pkg.replace("-", "_")] = None
        return info

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
