"""The embedded prompt set: arithmetic and algebra problems with exact answers, made here.

Deterministic (a seeded generator, no file, no network), and weighted towards easy problems so a
135M-parameter teacher gets a fair share right while the harder ones still fail visibly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from fractions import Fraction

Row = dict[str, str]


def _add(r: random.Random) -> Row:
    a, b = r.randint(1, 20), r.randint(1, 20)
    return {"problem": f"What is {a} + {b}?", "answer": str(a + b), "kind": "addition"}


def _sub(r: random.Random) -> Row:
    a = r.randint(5, 30)
    b = r.randint(1, a)
    return {"problem": f"What is {a} - {b}?", "answer": str(a - b), "kind": "subtraction"}


def _mul(r: random.Random) -> Row:
    a, b = r.randint(2, 12), r.randint(2, 12)
    return {"problem": f"What is {a} times {b}?", "answer": str(a * b), "kind": "multiplication"}


def _div(r: random.Random) -> Row:
    b, q = r.randint(2, 10), r.randint(2, 12)
    return {"problem": f"What is {b * q} divided by {b}?", "answer": str(q), "kind": "division"}


def _linear(r: random.Random) -> Row:
    a, x, b = r.randint(2, 9), r.randint(1, 12), r.randint(1, 20)
    return {"problem": f"Solve for x: {a}x + {b} = {a * x + b}.", "answer": str(x), "kind": "linear_equation"}


def _fraction(r: random.Random) -> Row:
    a, b, c, d = r.randint(1, 5), r.randint(2, 6), r.randint(1, 5), r.randint(2, 6)
    s = Fraction(a, b) + Fraction(c, d)
    ans = str(s.numerator) if s.denominator == 1 else f"\\frac{{{s.numerator}}}{{{s.denominator}}}"
    return {
        "problem": f"What is {a}/{b} + {c}/{d}? Give the answer as a fraction in lowest terms.",
        "answer": ans,
        "kind": "fractions",
    }


def _square(r: random.Random) -> Row:
    a = r.randint(2, 15)
    return {"problem": f"What is {a} squared?", "answer": str(a * a), "kind": "powers"}


def _word(r: random.Random) -> Row:
    a, b = r.randint(2, 9), r.randint(2, 9)
    return {
        "problem": f"Sam has {a} bags with {b} apples in each bag. How many apples does Sam have?",
        "answer": str(a * b),
        "kind": "word_problem",
    }


# (generator, weight): easy ones dominate.
_KINDS: list[tuple[Callable[[random.Random], Row], int]] = [
    (_add, 6), (_sub, 4), (_mul, 4), (_div, 2), (_square, 2), (_word, 2), (_linear, 2), (_fraction, 1),
]


def arithmetic(count: int = 300, seed: int = 20251125) -> list[Row]:
    """`count` distinct problems; the same list on every machine and Python version."""
    r = random.Random(seed)
    gens = [g for g, w in _KINDS for _ in range(w)]
    rows: list[Row] = []
    seen: set[str] = set()
    while len(rows) < count:
        row = r.choice(gens)(r)
        if row["problem"] not in seen:
            seen.add(row["problem"])
            rows.append(row)
    return rows


BUILTIN_SETS: dict[str, Callable[[], list[Row]]] = {"arithmetic": arithmetic}
