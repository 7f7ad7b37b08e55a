"""Tiers 2 and 3 of the math comparison, in a worker process (sympy, math-verify).

2. normalised string equality, once the reference is known to parse (or is plain text);
3. math-verify `verify` with a higher numeric precision, then our own checks on a "yes": shapes
   must agree (a set is not an interval or a tuple), numbers must agree exactly when both are
   exact and relatively when a decimal is involved (math-verify's absolute rounding says
   1/2^99 == 1/2^98 and 1e-10 == 2e-10), and a non-assignment equation must parse as an
   equation (math-verify #60 compares the "= 0" right-hand sides).

Parsing is parse.py's: our own strings whole or not at all, math-verify's extraction only for a
completion with no box and no "answer is" statement.

The soft deadline counts the worker's CPU time, not the wall clock: a comparison that needs 2 s
of CPU needs 2 s on an idle machine and on a busy one, so a verdict does not depend on the load.
The pool's wall-clock kill stays as the hard limit (C code never returns to run a handler).

math_verify and sympy are imported only inside these functions: the registry imports the package
in the driver.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from factory.verifiers.math.guards import normalise, prepare
from factory.verifiers.math.parse import (
    extract_from_text,
    has_equation,
    is_assignment,
    kind,
    parse_whole,
    rhs,
    split_top,
)

class _SoftTimeout(BaseException):
    """Raised by our alarm; a BaseException so sympy's `except Exception` cannot swallow it."""


def warm_worker() -> None:
    """Pool initializer: pay math-verify's imports and parser start-up once per worker."""
    import logging

    import math_verify  # noqa: F401

    # We disable math-verify's signal timeouts (our alarm and the pool's kill replace them);
    # its "timeout is disabled" warning would otherwise print once per worker.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    check_pair(("\\frac{1}{2}", "0.5", None, 30, 1e-4, 0.0))
    check_pair(("\\frac{1}{2}", None, "so it is $\\frac{1}{2}$", 30, 1e-4, 0.0))


def check_pair(job: tuple[str, str | None, str | None, int, float, float]) -> tuple[bool | None, str]:
    """Worker entry: (reference, answer, text, numeric_precision, float_rel_tol, soft_cpu_s).
    `answer` None: look for the answer in `text` with math-verify's extraction."""
    import signal

    reference, answer, text, precision, rel_tol, soft = job
    use_alarm = soft > 0 and threading.current_thread() is threading.main_thread()
    if use_alarm:
        # A soft deadline inside the worker ends most slow cases without losing the warm worker.
        def on_alarm(signum: int, frame: Any) -> None:
            raise _SoftTimeout()

        signal.signal(signal.SIGPROF, on_alarm)
        signal.setitimer(signal.ITIMER_PROF, soft)  # CPU time of this process: load-independent
    try:
        try:
            return _compare(reference, answer, text, precision, rel_tol)
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_PROF, 0)
    except _SoftTimeout:  # also when it fires just before the timer is cleared
        return None, "timeout"


def _shapes_compatible(gold: Any, pred: Any) -> bool:
    """math-verify compares across shapes generously; an open interval (1,2) equals the set
    {1,2} there. Only pairs a reader would call the same kind of answer may match."""
    g, p = kind(gold), kind(pred)
    if g == p:
        return True
    if g == "relation" and is_assignment(gold):
        return _shapes_compatible(rhs(gold), pred)
    if p == "relation" and is_assignment(pred):
        return _shapes_compatible(gold, rhs(pred))
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
    if is_assignment(gold):
        gold = rhs(gold)
    if is_assignment(pred):
        pred = rhs(pred)
    g, p = kind(gold), kind(pred)
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


_WORDS = re.compile(r"[A-Za-z0-9]")


def _compare(
    reference: str, answer: str | None, text: str | None, precision: int, rel_tol: float
) -> tuple[bool | None, str]:
    from math_verify import verify

    gold = parse_whole(reference)
    if answer is not None and normalise(reference) == normalise(answer) and _WORDS.search(reference):
        return True, "correct"  # also `\\text{Monday}`, `12:00`: answers sympy has no use for
    if gold is None or (has_equation(reference) and kind(gold) == "expr" and reference.count("=") < 2):
        # An equation that came back as a bare number lost its left-hand side (math-verify #60).
        return None, "unparseable_reference"
    how = ""
    pred = parse_whole(answer) if answer is not None else None
    if pred is None and text:
        # No answer was extracted, or the whole short text did not parse: math-verify's own
        # extraction looks for the last boxed / "answer is" / LaTeX / plain expression in it.
        pred, matched = extract_from_text(text)
        if pred is None:
            return False, "no_answer (math_verify)" if answer is None else "unparseable_answer"
        answer, how = prepare(matched or ""), " (math_verify)"
        if kind(pred) == "relation" and not is_assignment(pred) and getattr(pred, "lhs", None) is not None:
            if pred.lhs.is_number:  # prose "... $\\frac{1}{2} = \\frac{10}{9}$": the value it ends on
                pred, answer = rhs(pred), ""
    if pred is None or answer is None or (has_equation(answer) and kind(pred) == "expr"):
        return False, "unparseable_answer" + how
    if _ordered_list_matches(gold, pred, answer):
        return True, "correct" + how
    same_set = _same_solution_set(gold, pred)
    if same_set is not None:
        return (True, "correct" + how) if same_set else (False, "wrong_answer" + how)
    if not _shapes_compatible(gold, pred):
        return False, "wrong_answer" + how
    ok = verify(
        gold,
        pred,
        float_rounding=6,
        numeric_precision=precision,
        strict=True,
        timeout_seconds=None,  # type: ignore[arg-type]
    )
    if ok and _strict_equal(gold, pred, precision, rel_tol):
        return True, "correct" + how
    return False, "wrong_answer" + how


def _solution_set(e: Any) -> Any:
    """`x \\in [-2, 7]` and `-2 \\le x \\le 7` as the set they describe; None for anything else."""
    from sympy import Contains, Set
    from sympy.core.relational import Relational
    from sympy.logic.boolalg import And

    if isinstance(e, Contains) and isinstance(e.args[1], Set):
        return e.args[0], e.args[1]
    if isinstance(e, Relational) and e.rel_op == "==" and e.lhs.is_Symbol and isinstance(e.rhs, Set):
        return e.lhs, e.rhs  # math-verify reads `x \\in S` as Eq(x, S)
    if isinstance(e, (Relational, And)) and not is_assignment(e) and len(e.free_symbols) == 1 and not (
        isinstance(e, Relational) and e.rel_op == "=="
    ):
        try:
            return next(iter(e.free_symbols)), e.as_set()
        except Exception:
            return None
    return None


def _same_solution_set(gold: Any, pred: Any) -> bool | None:
    """Both sides a condition on the same one variable: equal as sets (exactly); None otherwise."""
    g, p = _solution_set(gold), _solution_set(pred)
    if g is None or p is None or g[0] != p[0]:
        return None
    try:
        return bool(g[1] == p[1])
    except Exception:
        return None


def _ordered_list_matches(gold: Any, pred: Any, answer: str) -> bool:
    """`1, 3` or `{1,3}` (a LaTeX group, not the set `\\{1,3\\}`) written for the pair (1, 3): a
    bare list in the same order as a tuple (or the open interval `(1, 3)` reads as) matches it."""
    from sympy import FiniteSet, Interval, Tuple

    s = answer.strip()
    if "\\{" in s or s[:1] in "([" or len(split_top(s.strip("{}"))) < 2:
        return False
    if isinstance(gold, Interval) and gold.left_open and gold.right_open:
        items = [gold.start, gold.end]
    elif isinstance(gold, Tuple):
        items = list(gold.args)
    else:
        return False
    parts = [parse_whole(p) for p in split_top(s.strip("{}"))]
    if len(parts) != len(items) or any(p is None for p in parts) or not isinstance(pred, (FiniteSet, Tuple)):
        return False
    return all(bool(_numbers_agree_exact(a, b)) for a, b in zip(items, parts, strict=True))


def _numbers_agree_exact(a: Any, b: Any) -> bool:
    from sympy import simplify

    try:
        return bool(simplify(a - b) == 0)
    except Exception:
        return False
