"""Sympy objects from our own strings, in a worker process: the reference and an extracted answer
parsed whole or not at all, and math-verify's extraction for a completion with no extracted answer.

Whole or nothing: math-verify's extraction looks for *some* expression in a text and, when the
LaTeX parse fails, takes the first number it finds, so `1 + \\frac{1}{\\mathrm{e}}` became `1`. Here
a string that does not parse as a whole is None (unparseable), never a fragment.

math_verify and sympy are imported inside the functions: the registry imports the package in the
driver.
"""

from __future__ import annotations

import re
from typing import Any

from factory.verifiers.math.guards import rewrite_constants

FALLBACK_CHARS = 4000  # of a completion's end, searched by math-verify when nothing was extracted

_TOP_EQUATION = re.compile(r"(?<![<>!\\])=")


def has_equation(s: str) -> bool:
    return bool(_TOP_EQUATION.search(s))


def _parse_latex(s: str) -> Any:
    """`s` parsed whole by math-verify's LaTeX normaliser and parser; None when it does not parse."""
    from math_verify.parser import LatexExtractionConfig, normalize_latex, parse_latex_cached
    from sympy import Basic, MatrixBase

    try:
        obj = parse_latex_cached(normalize_latex(s, config=LatexExtractionConfig().normalization_config))
    except Exception:
        return None
    if not isinstance(obj, (Basic, MatrixBase)) or getattr(obj, "is_infinite", False) is True and ":" in s:
        return None  # `12:00` parses as a division by zero
    return obj


_PLUS_MINUS = re.compile(r"\\(?:pm|mp)(?![A-Za-z])")


def split_top(s: str) -> list[str]:
    """`s` cut at commas and semicolons outside brackets."""
    parts, depth, start = [], 0, 0
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c in ",;" and depth == 0:
            parts.append(s[start:i])
            start = i + 1
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


def _parse_one(s: str) -> Any:
    """One item: LaTeX, with `a \\pm b` read as the set {a + b, a - b}."""
    obj = _parse_latex(s)
    if obj is not None or len(_PLUS_MINUS.findall(s)) != 1:
        return obj
    from sympy import Eq, FiniteSet

    plus, minus = _parse_latex(_PLUS_MINUS.sub("+", s)), _parse_latex(_PLUS_MINUS.sub("-", s))
    if plus is None or minus is None:
        return None
    if is_assignment(plus) and is_assignment(minus):
        return Eq(plus.lhs, FiniteSet(rhs(plus), rhs(minus)), evaluate=False)
    return FiniteSet(plus, minus)


def _parse_list(s: str) -> Any:
    """`x = \\frac{1}{2}, x = \\frac{-1 \\pm \\sqrt{13}}{4}`: the solutions of one unknown as a set."""
    from sympy import Eq, FiniteSet

    parts = split_top(s)
    if len(parts) < 2 or not all(parts):
        return None
    items = [_parse_one(p) for p in parts]
    if any(x is None for x in items):
        return None
    values: list[Any] = []
    lhs = None
    for x in items:
        if kind(x) == "relation" and is_assignment(x):
            if lhs is not None and x.lhs != lhs:
                return None  # `a = 1, b = 2` is math-verify's to read
            lhs = x.lhs
            x = rhs(x)
        elif lhs is not None:
            return None
        values.extend(x.args if kind(x) == "set" else [x])
    found = FiniteSet(*values)
    return Eq(lhs, found, evaluate=False) if lhs is not None else found


_PLAIN_EXPR = re.compile(r"^[0-9A-Za-z+\-*/^(). ]+$")


def parse_whole(s: str) -> Any:
    """`s` (our prepared reference or extracted answer) as one sympy object, or None.

    Whole or nothing: a parse that stops early (`1 + \\frac{1}{\\mathrm{e}}` read as `1`) would
    compare a fragment. Plain programming notation (`x^2 + 2*x + 1`) is LaTeX enough."""
    # `x = a, x = b \\pm c`: the solutions item by item (a `\\pm` applies to its own item only)
    obj = _parse_list(s) if _PLUS_MINUS.search(s) and len(split_top(s)) > 1 else None
    if obj is None:
        obj = _parse_one(s)
    if obj is None and _PLAIN_EXPR.match(s) and "**" in s:
        from math_verify.parser import parse_expr_cached

        try:
            obj = parse_expr_cached(s)
        except Exception:
            obj = None
    return obj


_TEXT_PERCENT = re.compile(r"(\d\$?)\s*(?:\\?%|\b(?:percent|percentage|pct)\b)", re.I)


def extract_from_text(text: str) -> tuple[Any, str | None]:
    """math-verify's own extraction on the end of a completion: (object, what it matched)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse
    from sympy import Basic, MatrixBase

    # A percent stays a unit, as in our own strings (math-verify divides by 100).
    text = _TEXT_PERCENT.sub(r"\1", rewrite_constants(text[-FALLBACK_CHARS:]))
    found = parse(
        text,
        extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
        parsing_timeout=None,  # type: ignore[arg-type]  # our timer, not theirs
    )
    obj = next((o for o in found if isinstance(o, (Basic, MatrixBase))), None)
    matched = next((o for o in found if isinstance(o, str)), None)
    return obj, matched


def is_assignment(e: Any) -> bool:
    """`x = 3`, `AB = 5`, `a = b = 3`: a left side made of symbols only (math-verify's rule)."""
    from math_verify.grader import is_assignment_relation

    return bool(is_assignment_relation(e))


def rhs(e: Any) -> Any:
    from math_verify.grader import take_last_relation

    return take_last_relation(e).rhs


def kind(e: Any) -> str:
    from sympy import FiniteSet, MatrixBase, Set, Tuple
    from sympy.matrices.expressions import MatrixExpr
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
    if isinstance(e, (MatrixBase, MatrixExpr)):
        return "matrix"
    return "expr"
