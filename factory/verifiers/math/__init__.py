"""Math answers: the extracted answer against the reference, with math-verify in a worker pool.

The comparison is tiered, cheapest first, and each tier is allowed to decide only what it can
decide for sure:

  0. guards (driver, no sympy): missing reference/answer, length cap, binary garbage, unbalanced
     braces, power towers and huge factorials that would make sympy compute for hours;
  1. exact numbers (driver, no sympy): integers, decimals, fractions, scientific notation;
     both sides plain numbers -> the verdict is final (1/2 == 0.5, 3 == 3.0, 7 != 8);
  2. normalised string equality (worker), once the reference is known to parse;
  3. math-verify `verify` (worker) with a higher numeric precision, then our own checks on a
     "yes": shapes must agree (a set is not an interval or a tuple), numbers must agree exactly
     when both are exact and relatively when a decimal is involved (math-verify's absolute
     rounding says 1/2^99 == 1/2^98 and 1e-10 == 2e-10), and a non-assignment equation must
     parse as an equation (math-verify #60 compares the "= 0" right-hand sides).

Decisions worth knowing: `x = 3` matches `3` (an assignment names the answer); a trailing
percent sign is a unit (`50\\%` matches `50`, not `0.5`); a decimal matches a fraction it
rounds from (1/3 vs 0.333333) within `float_rel_tol`; a reference that does not parse is
never "correct".

math_verify and sympy are imported only inside the worker functions: the registry imports
this module in the driver.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from factory.verifiers.parsing import EXTRACTION_MODES
from factory.types import Trace, Verdict
from factory.verifiers.base import VERIFIERS, Verifier

Extraction = Literal["boxed", "answer_is", "boxed_or_answer_is", "last_number"]
assert set(Extraction.__args__) == set(EXTRACTION_MODES)  # type: ignore[attr-defined]

# Sympy builds powers and factorials of literals exactly: 9^{9^{9}} has 370 million digits.
MAX_EXPONENT = 20_000  # largest literal exponent let through (10^{20000}: 20,001 digits)
MAX_FACTORIAL = 5_000
MAX_NESTING = 40  # bracket depth; deeper input overflows the LaTeX parser's recursion

# --- tier 0: cheap guards, plain Python -----------------------------------------------------------

_GARBAGE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd\ud800-\udfff]")
_SPACES = re.compile(r"\\[,;:! ]|~|\\(?:q?quad|displaystyle|left|right|big|Big|bigg|Bigg)(?![A-Za-z])")
_SCI = re.compile(r"^([+-]?\d+(?:\.\d+)?)[eE]([+-]?\d+)$")


def prepare(s: str) -> str:
    """Light clean-up that never changes meaning: math delimiters, spacing, trailing period, %."""
    s = s.strip().replace("\u2212", "-")  # Unicode minus
    if s.startswith("$") and s.endswith("$"):
        s = s.strip("$").strip()
    if s.startswith("\\(") and s.endswith("\\)"):
        s = s[2:-2].strip()
    s = s.rstrip(".").strip()
    s = re.sub(r"\\?%$", "", s).strip()  # `50\%` is 50 "percent" -- a unit, like math-verify
    m = _SCI.match(s.replace(" ", ""))
    if m:  # LaTeX has no `e` notation: `1e-10` would parse as (Euler's e) - 10
        s = f"{m.group(1)}\\times 10^{{{int(m.group(2))}}}"
    return s


def normalise(s: str) -> str:
    """For string equality: drop spacing commands, sizing, `\\dfrac`, whitespace."""
    s = _SPACES.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return "".join(s.split())


def _matches(s: str) -> tuple[dict[int, int], int] | None:
    """Matching bracket positions (close -> open) and max depth; None if unbalanced."""
    stack: list[tuple[str, int]] = []
    match: dict[int, int] = {}
    depth = 0
    i, n = 0, len(s)
    braces = 0
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2  # `\{` `\}` are literal braces
            continue
        if c == "{":
            braces += 1
        elif c == "}":
            braces -= 1
            if braces < 0:
                return None
        if c in "{([":
            stack.append((c, i))
            depth = max(depth, len(stack))
        elif c in "})]":
            # Half-open intervals `[1, 2)` mismatch on purpose: match the innermost opener.
            if stack:
                match[i] = stack.pop()[1]
        i += 1
    if braces != 0:
        return None
    return match, depth


_INT = re.compile(r"^\s*[+-]?\d+\s*$")


def _magnitude(s: str) -> float | None:
    """log10 of |value| for integer literals and towers of them (`9^{9^{9}}`); None if unknown."""
    s = s.strip()
    while len(s) >= 2 and s[0] in "{(" and s[-1] in "})":
        s = s[1:-1].strip()
    if s[:1] in ("-", "+"):
        s = s[1:].strip()  # |value|: 2^{-10^{7}} is as hard as 2^{10^{7}}
    if _INT.match(s):
        digits = s.strip().lstrip("+-").lstrip("0")
        if len(digits) > 300:
            return float(len(digits))
        v = abs(int(s))
        return math.log10(v) if v else -math.inf
    m = re.match(r"^(\d+)\s*(?:\^|\*\*)\s*(.+)$", s, re.S)
    if m:
        base = int(m.group(1)) if len(m.group(1)) < 300 else 10**300
        exp = _magnitude(m.group(2))
        if exp is None or base < 2:
            return None if exp is None else 0.0
        if exp > 300:
            return math.inf
        value = 10.0**exp  # exponents are small here: exact enough for a bound
        return value * math.log10(base)
    return None


def _group_after(s: str, i: int, closes: dict[int, int]) -> str:
    """The exponent text right after position i: a {group}, a (group) for `**`, or one token."""
    n = len(s)
    while i < n and s[i] == " ":
        i += 1
    if i >= n:
        return ""
    if s[i] in "{(":
        j = closes.get(i)
        return s[i : j + 1] if j is not None else s[i:]
    m = re.match(r"[+-]?\d+", s[i:])
    return m.group(0) if m else s[i]


def too_complex(s: str) -> str | None:
    """Why sympy should not see `s` (None if fine). Linear-ish: s is length-capped already."""
    found = _matches(s)
    if found is None:
        return "unbalanced"
    match, depth = found
    if depth > MAX_NESTING:
        return "too_deep"
    closes = {v: k for k, v in match.items()}
    for m in re.finditer(r"\^|\*\*", s):
        exp_text = _group_after(s, m.end(), closes)
        if not exp_text:
            continue
        # `^9^9` in plain notation chains to the right: estimate the whole tail.
        tail = s[m.end() :]
        mag = _magnitude(exp_text)
        if re.match(r"^\s*\d+\s*(\^|\*\*)", tail):
            mag = _magnitude(tail.split(")")[0].split("}")[0]) if mag is not None else None
        if mag is None:
            continue
        if mag > math.log10(MAX_EXPONENT):
            return "power_too_large"
    for m in re.finditer(r"!", s):
        j = m.start() - 1
        while j >= 0 and s[j] == " ":
            j -= 1
        if j < 0:
            continue
        if s[j].isdigit():
            k = j
            while k >= 0 and s[k].isdigit():
                k -= 1
            text = s[k + 1 : j + 1]
        elif s[j] in "})" and j in match:
            text = s[match[j] : j + 1]
        else:
            continue
        mag = _magnitude(text)
        if mag is not None and mag > math.log10(MAX_FACTORIAL):
            return "factorial_too_large"
    return None


# --- tier 1: exact numbers, plain Python --------------------------------------------------------

_FRAC = re.compile(r"^([+-]?)\\frac\{\s*([+-]?\d+)\s*\}\{\s*([+-]?\d+)\s*\}$")
_SLASH = re.compile(r"^([+-]?\d+)\s*/\s*([+-]?\d+)$")
_DEC = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")
_TIMES10 = re.compile(r"^([+-]?\d+(?:\.\d+)?)\\times10\^\{?([+-]?\d+)\}?$")


def exact_number(s: str) -> tuple[Fraction, bool] | None:
    """(value, is_decimal) for a plain number; None for anything else (left to sympy)."""
    t = normalise(s)
    if len(t) > 400:
        return None
    if _DEC.match(t):
        return Fraction(t), "." in t
    m = _FRAC.match(t)
    if m:
        den = int(m.group(3))
        if den == 0:
            return None
        v = Fraction(int(m.group(2)), den)
        return (-v if m.group(1) == "-" else v), False
    m = _SLASH.match(t)
    if m:
        den = int(m.group(2))
        return (Fraction(int(m.group(1)), den), False) if den else None
    m = _TIMES10.match(t)
    if m and abs(int(m.group(2))) <= 400:
        return Fraction(m.group(1)) * Fraction(10) ** int(m.group(2)), True
    return None


def decimal_agrees(exact: Fraction, dec: Fraction, rel_tol: float) -> bool:
    """A decimal stands for an exact value if it rounds like it (to 6 places, as math-verify)
    AND is relatively close: absolute rounding alone says 1e-10 == 2e-10."""
    if exact == dec:
        return True
    if round(exact, 6) != round(dec, 6):
        return False
    scale = max(abs(exact), abs(dec))
    return abs(exact - dec) <= Fraction(rel_tol) * scale


def numbers_verdict(ref: tuple[Fraction, bool], ans: tuple[Fraction, bool], rel_tol: float) -> bool:
    (rv, rdec), (av, adec) = ref, ans
    if rv == av:
        return True
    if rdec != adec:  # one decimal, one exact: the decimal may be a rounding of the fraction
        exact, dec = (av, rv) if rdec else (rv, av)
        return decimal_agrees(exact, dec, rel_tol)
    return False


# --- tiers 2 and 3: in the worker process (sympy, math-verify) ----------------------------------


class _SoftTimeout(BaseException):
    """Raised by our alarm; a BaseException so sympy's `except Exception` cannot swallow it."""


def warm_worker() -> None:
    """Pool initializer: pay math-verify's imports and parser start-up once per worker."""
    import logging

    import math_verify  # noqa: F401

    # We disable math-verify's signal timeouts (our alarm and the pool's kill replace them);
    # its "timeout is disabled" warning would otherwise print once per worker.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    check_pair(("\\frac{1}{2}", "0.5", 30, 1e-4, 0.0))


def check_pair(job: tuple[str, str, int, float, float]) -> tuple[bool | None, str]:
    """Worker entry: (reference, answer, numeric_precision, float_rel_tol, soft_timeout_s)."""
    import signal

    reference, answer, precision, rel_tol, soft = job
    use_alarm = soft > 0 and threading.current_thread() is threading.main_thread()
    if use_alarm:
        # A soft deadline inside the worker ends most slow cases without losing the warm worker;
        # the pool's SIGKILL stays the hard limit (C code never returns to run this handler).
        def on_alarm(signum: int, frame: Any) -> None:
            raise _SoftTimeout()

        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, soft)
    try:
        try:
            return _compare(reference, answer, precision, rel_tol)
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except _SoftTimeout:  # also when it fires just before the timer is cleared
        return None, "timeout"


_TOP_EQUATION = re.compile(r"(?<![<>!\\])=")


def _has_equation(s: str) -> bool:
    return bool(_TOP_EQUATION.search(s))


def _parse(s: str) -> Any:
    """The first sympy object math-verify finds in `s`, or None (string fallbacks do not count)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse
    from sympy import Basic, MatrixBase

    found = parse(
        f"${s}$",
        extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
        parsing_timeout=None,  # type: ignore[arg-type]  # signal.alarm: ours, not theirs
    )
    for obj in found:
        if isinstance(obj, (Basic, MatrixBase)):
            return obj
    return None


def _is_assignment(e: Any) -> bool:
    """`x = 3`, `AB = 5`, `a = b = 3`: a left side made of symbols only (math-verify's rule)."""
    from math_verify.grader import is_assignment_relation

    return bool(is_assignment_relation(e))


def _rhs(e: Any) -> Any:
    from math_verify.grader import take_last_relation

    return take_last_relation(e).rhs


def _kind(e: Any) -> str:
    from sympy import FiniteSet, MatrixBase, Set, Tuple
    from sympy.core.relational import Relational
    from sympy.logic.boolalg import BooleanFunction

    if isinstance(e, (Relational, BooleanFunction)):
        return "relation"
    if isinstance(e, FiniteSet):
        return "set"
    if isinstance(e, Set):
        return "interval"  # intervals and unions of them
    if isinstance(e, Tuple):
        return "tuple"
    if isinstance(e, MatrixBase):
        return "matrix"
    return "expr"


def _shapes_compatible(gold: Any, pred: Any) -> bool:
    """math-verify compares across shapes generously; an open interval (1,2) equals the set
    {1,2} there. Only pairs a reader would call the same kind of answer may match."""
    g, p = _kind(gold), _kind(pred)
    if g == p:
        return True
    if g == "relation" and _is_assignment(gold):
        return _shapes_compatible(_rhs(gold), pred)
    if p == "relation" and _is_assignment(pred):
        return _shapes_compatible(gold, _rhs(pred))
    pair = {g, p}
    if pair == {"relation", "interval"}:
        return True  # 1 < x < 2 vs (1, 2): math-verify turns the inequality into a set
    if pair == {"set", "expr"}:
        s = gold if g == "set" else pred
        return len(s) == 1
    if pair in ({"interval", "tuple"}, {"matrix", "tuple"}):
        return True  # same parenthesis notation; math-verify decides
    return False


def _numbers_agree(a: Any, b: Any, precision: int, rel_tol: float) -> bool:
    from sympy import Float

    a, b = a.doit(), b.doit()
    if not (a.is_number and b.is_number):
        return True  # symbolic: math-verify's simplification decides
    if a.is_Rational and b.is_Rational:
        return bool(a == b)
    if a.is_finite is False or b.is_finite is False:
        return bool(a == b)
    has_float = a.has(Float) or b.has(Float)
    va, vb = a.evalf(precision + 10), b.evalf(precision + 10)
    diff = abs(va - vb)
    scale = max(abs(va), abs(vb))
    if scale == 0:
        return bool(diff == 0)
    tol = rel_tol if has_float else 10.0 ** (-(precision - 5))
    return bool(diff <= tol * scale)


def _strict_equal(gold: Any, pred: Any, precision: int, rel_tol: float) -> bool:
    """Re-check a math-verify "yes" where its tolerance is too loose (numbers inside shapes)."""
    from sympy import FiniteSet, Interval, Tuple

    # Assignments compare by their values (math-verify has checked the left sides already).
    if _is_assignment(gold):
        gold = _rhs(gold)
    if _is_assignment(pred):
        pred = _rhs(pred)
    g, p = _kind(gold), _kind(pred)
    if g == p == "expr":
        return _numbers_agree(gold, pred, precision, rel_tol)
    if isinstance(gold, Interval) and isinstance(pred, Interval):
        return (
            gold.left_open == pred.left_open
            and gold.right_open == pred.right_open
            and _strict_equal(gold.start, pred.start, precision, rel_tol)
            and _strict_equal(gold.end, pred.end, precision, rel_tol)
        )
    if isinstance(gold, Tuple) and isinstance(pred, Tuple) and len(gold) == len(pred):
        return all(_strict_equal(x, y, precision, rel_tol) for x, y in zip(gold, pred, strict=True))
    if isinstance(gold, FiniteSet) and isinstance(pred, FiniteSet) and len(gold) == len(pred):
        left = list(pred.args)
        for x in gold.args:
            hit = next((y for y in left if _strict_equal(x, y, precision, rel_tol)), None)
            if hit is None:
                return False
            left.remove(hit)
        return True
    if {g, p} == {"set", "expr"}:
        s, e = (gold, pred) if g == "set" else (pred, gold)
        return _strict_equal(next(iter(s)), e, precision, rel_tol)
    return True


def _compare(reference: str, answer: str, precision: int, rel_tol: float) -> tuple[bool | None, str]:
    from math_verify import verify

    gold = _parse(reference)
    if gold is None or (_has_equation(reference) and _kind(gold) == "expr"):
        # An equation that came back as a bare number lost its left-hand side (math-verify #60).
        return None, "unparseable_reference"
    if normalise(reference) == normalise(answer):
        return True, "correct"
    pred = _parse(answer)
    if pred is None or (_has_equation(answer) and _kind(pred) == "expr"):
        return False, "unparseable_answer"
    if not _shapes_compatible(gold, pred):
        return False, "wrong_answer"
    ok = verify(
        gold,
        pred,
        float_rounding=6,
        numeric_precision=precision,
        strict=True,
        timeout_seconds=None,  # type: ignore[arg-type]
    )
    if ok and _strict_equal(gold, pred, precision, rel_tol):
        return True, "correct"
    return False, "wrong_answer"


# --- the verifier -------------------------------------------------------------------------------


class MathParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(5.0, gt=0)  # per comparison, enforced by killing the worker
    workers: int | None = Field(None, ge=1)  # None: context["verify_workers"] or os.cpu_count()
    extraction: Extraction = "boxed"  # how the runner fills Trace.extracted_answer
    numeric_precision: int = Field(30, ge=15, le=200)  # digits for evalf (math-verify: 15)
    float_rel_tol: float = Field(1e-4, gt=0, lt=1)  # a decimal vs an exact value, relative
    max_answer_chars: int = Field(1000, ge=1)


_CACHE_SIZE = 50_000


class Job(NamedTuple):
    """A pair that passed the cheap tiers and needs sympy: prepared reference and answer."""

    reference: str
    answer: str


@VERIFIERS.register("math")
class MathVerifier(Verifier):
    Params = MathParams
    version = "1"
    needs_reference = True

    def __init__(self, params: BaseModel, context: dict[str, Any] | None = None):
        super().__init__(params, context)
        self.p: MathParams = params  # type: ignore[assignment]
        self._pool: Any = None
        self._lock = threading.Lock()  # guards the pool and the cache
        # Samples of one prompt often give the same answer; sympy work is the cost, not lookups.
        self._cache: OrderedDict[Job, tuple[bool | None, str]] = OrderedDict()

    @property
    def workers(self) -> int:
        return self.p.workers or int(self.context.get("verify_workers") or 0) or os.cpu_count() or 1

    def warm_up(self) -> None:
        # The runner calls this while the engines load, so the tail of a run never waits for
        # worker processes to import sympy.
        self._get_pool().start()

    def _get_pool(self) -> Any:
        from factory.verifiers.pool import HardTimeoutPool

        with self._lock:
            if self._pool is None:
                self._pool = HardTimeoutPool(
                    f"{__name__}:check_pair",
                    workers=self.workers,
                    timeout_s=self.p.timeout_s,
                    initializer=f"{__name__}:warm_worker",
                    max_tasks_per_worker=20_000,  # sympy's caches grow; recycle now and then
                )
            return self._pool

    def precheck(self, reference: str | None, answer: str | None) -> tuple[bool | None, str] | Job:
        """Tiers 0-1 in the calling thread: a final (passed, reason), or a Job for the workers."""
        if reference is None or not reference.strip():
            return None, "no_reference"
        if answer is None or not answer.strip():
            return False, "no_answer"
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
        rnum, anum = exact_number(ref), exact_number(ans)
        if rnum is not None and anum is not None:
            ok = numbers_verdict(rnum, anum, self.p.float_rel_tol)
            return (True, "correct") if ok else (False, "wrong_answer")
        return Job(ref, ans)

    def verify(self, trace: Trace) -> Verdict:
        return self.verify_many([trace])[0]

    def verify_many(self, traces: Sequence[Trace]) -> list[Verdict]:
        out: list[Verdict | None] = [None] * len(traces)
        jobs: dict[Job, list[int]] = {}  # identical pairs (samples of one prompt) go once
        for i, t in enumerate(traces):
            pre = self.precheck(t.prompt.reference, t.extracted_answer)
            if not isinstance(pre, Job):
                out[i] = self.verdict(*pre)
                continue
            with self._lock:
                cached = self._cache.get(pre)
                if cached is not None:
                    self._cache.move_to_end(pre)
            if cached is not None:
                out[i] = self.verdict(*cached)
            else:
                jobs.setdefault(pre, []).append(i)
        if jobs:
            keys = list(jobs)
            soft = self.p.timeout_s * 0.8
            items = [(r, a, self.p.numeric_precision, self.p.float_rel_tol, soft) for r, a in keys]
            for key, res in zip(keys, self._get_pool().map(items), strict=True):
                if res.timed_out:
                    passed, reason = None, "timeout"
                elif res.error is not None:
                    passed, reason = None, "verifier_error"
                else:
                    passed, reason = res.value
                if reason not in ("timeout", "verifier_error"):  # may go another way next time
                    with self._lock:
                        self._cache[key] = (passed, reason)
                        if len(self._cache) > _CACHE_SIZE:
                            self._cache.popitem(last=False)
                for i in jobs[key]:
                    out[i] = self.verdict(passed, reason)
        return [v for v in out if v is not None]

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
