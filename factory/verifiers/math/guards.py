"""Tiers 0 and 1 of the math comparison, in plain Python (the driver runs them, no sympy).

0. guards: missing reference/answer, length cap, binary garbage, unbalanced braces, power
   towers and huge factorials that would make sympy compute for hours;
1. exact numbers: integers, decimals, fractions, mixed numbers, scientific notation, a decimal
   comma; both sides plain numbers -> the verdict is final (1/2 == 0.5, 3 == 3.0, 7 != 8).

`prepare` also rewrites what the LaTeX parser would silently drop: `\\mathrm{e}` (read as a unit
and removed, so `1 + \\frac{1}{\\mathrm{e}}` became `1`), `\\mathrm{i}`, `\\operatorname{sin}`, `pi`
written as a word.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

# Sympy builds powers and factorials of literals exactly: 9^{9^{9}} has 370 million digits.
MAX_EXPONENT = 20_000  # largest literal exponent let through (10^{20000}: 20,001 digits)
MAX_FACTORIAL = 5_000
MAX_NESTING = 40  # bracket depth; deeper input overflows the LaTeX parser's recursion

# --- tier 0: cheap guards -------------------------------------------------------------------------

_GARBAGE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd\ud800-\udfff]")
_SPACES = re.compile(r"\\[,;:! ]|~|\\(?:q?quad|displaystyle|left|right|big|Big|bigg|Bigg)(?![A-Za-z])")
_SCI = re.compile(r"^([+-]?\d+(?:\.\d+)?)[eE]([+-]?\d+)$")


# `28\\%`, `28 %`, `28 percent`, `28 pct`, `\\text{ percent}`: all the same unit.
_PERCENT = re.compile(
    r"\s*(?:\\?%|\\text\{\s*(?:\\?%|percent|percentage|pct)\s*\}|\b(?:percent|percentage|pct))\s*$", re.I
)
# Constants and functions the LaTeX parser loses: its unit stripping removes `\\mathrm{e}` whole.
_UPRIGHT = re.compile(r"\\(?:mathrm|text|textrm|mathit|rm|operatorname)\s*\{\s*([ei])\s*\}")
_UPRIGHT_PI = re.compile(r"\\(?:mathrm|text|textrm|mathit|operatorname)\s*\{\s*\\?pi\s*\}|(?<![\\A-Za-z])pi(?![A-Za-z])")
_FUNCTIONS = (
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh ln log exp sgn gcd lcm max min"
).split()
_OPERATORNAME = re.compile(r"\\operatorname\*?\s*\{\s*(" + "|".join(_FUNCTIONS) + r")\s*\}")


_MATH_SPANS = re.compile(r"\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]|\\text\{[^{}]*\}|\\[A-Za-z]+")
_WORD = re.compile(r"[A-Za-z]{2,}")


def is_bare(s: str) -> bool:
    """No word outside math and commands: `28 percent` or `x^2+2x+1`, not `Answer $9$`."""
    return not _WORD.search(_MATH_SPANS.sub(" ", _PERCENT.sub("", s.strip().rstrip("."))))


def has_percent(s: str) -> bool:
    return bool(_PERCENT.search(s.strip().rstrip(".,;").strip().strip("$").strip()))


# JSON written without escaping turns `\\frac` into a form feed + "rac", `\\beta` into a backspace;
# over-escaped text doubles the backslash of a command (`-2 \\\\le x`).
_MANGLED = {"\x0c": "\\f", "\x08": "\\b", "\x07": "\\a", "\x0b": "\\v"}
_MANGLED_RE = re.compile("[\x07\x08\x0b\x0c](?=[a-z])")
_DOUBLED = re.compile(
    r"\\\\(?=(?:le|ge|leq|geq|neq|frac|dfrac|tfrac|sqrt|boxed|text|cdot|times|pi|infty|in|cup|cap|pm)(?![A-Za-z]))"
)


def unmangle(s: str) -> str:
    """Restore commands that a lost or doubled escape broke (`\\x0crac` -> `\\frac`)."""
    if _MANGLED_RE.search(s):
        s = _MANGLED_RE.sub(lambda m: _MANGLED[m.group(0)], s)
    return _DOUBLED.sub(r"\\", s) if "\\\\" in s else s


def rewrite_constants(s: str) -> str:
    """`\\mathrm{e}` -> `e`, `\\mathrm{i}` -> `i`, `pi` -> `\\pi`, `\\operatorname{sin}` -> `\\sin`."""
    if "\\" not in s and "pi" not in s:
        return s
    s = _UPRIGHT.sub(lambda m: "{" + m.group(1) + "}", s)
    s = _UPRIGHT_PI.sub(r"\\pi ", s)
    return _OPERATORNAME.sub(lambda m: "\\" + m.group(1) + " ", s)


_APPROX = re.compile(r"\\approx|\u2248")


def prepare(s: str) -> str:
    """Light clean-up that never changes meaning: math delimiters, spacing, trailing
    punctuation, a percent unit, `= ... \\approx 0.577` tails, constants the parser would drop."""
    s = s.strip().replace("\u2212", "-")  # Unicode minus
    for _ in range(2):  # `$28$ %`: the unit outside the math, then the delimiters
        s = s.rstrip(".,;").strip()  # `\\frac{1}{3},` ends a sentence, not a list
        s = _PERCENT.sub("", s).strip()  # `50\\%` is 50 "percent": a unit, as in math-verify's strings
        if s.startswith("$") and s.endswith("$"):
            s = s.strip("$").strip()
        for open_, close in (("\\(", "\\)"), ("\\[", "\\]")):
            if s.startswith(open_) and s.endswith(close):
                s = s[2:-2].strip()
    if s.endswith("\\") and not s.endswith("\\\\"):
        s = s[:-1].strip()  # `185\\`: a stray backslash
    approx = _APPROX.search(s)
    if approx and approx.start() > 0:
        left, right = s[: approx.start()].strip(), s[approx.end() :].strip()
        # `\\frac{\\sqrt{3}}{3} \\approx 0.577`: the exact value; `x \\approx 11`: the value
        s = right if re.fullmatch(r"[A-Za-z]", left) else left
    m = _SCI.match(s.replace(" ", ""))
    if m:  # LaTeX has no `e` notation: `1e-10` would parse as (Euler's e) - 10
        s = f"{m.group(1)}\\times 10^{{{int(m.group(2))}}}"
    return rewrite_constants(s).strip()


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


# --- tier 1: exact numbers --------------------------------------------------------------------

_FRAC = re.compile(r"^([+-]?)\\frac\{\s*([+-]?\d+)\s*\}\{\s*([+-]?\d+)\s*\}$")
_SLASH = re.compile(r"^([+-]?\d+)\s*/\s*([+-]?\d+)$")
_DEC = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")
_TIMES10 = re.compile(r"^([+-]?\d+(?:\.\d+)?)\\times10\^\{?([+-]?\d+)\}?$")
# `4 4/9`, `918\\frac{1}{2}`: a whole number and a proper fraction (checked below) side by side.
_MIXED = re.compile(r"^([+-]?)(\d+)(?:\\frac\{(\d+)\}\{(\d+)\}|\s+(\d+)/(\d+))$")
_MIXED_SPACED = re.compile(r"^[+-]?\d+\s+\d+\s*/\s*\d+$")
_THOUSANDS = re.compile(r"^[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?$")  # `10,455`, `7,425,000.5`
# A decimal comma (`1000,99`, `0,111`): any group but a thousands group of three digits.
_DECIMAL_COMMA = re.compile(r"^([+-]?\d+),(\d+)$")


def exact_number(s: str) -> tuple[Fraction, bool] | None:
    """(value, is_decimal) for a plain number; None for anything else (left to sympy)."""
    t = normalise(s)
    if len(t) > 400:
        return None
    if _MIXED_SPACED.match(s.strip()):
        t = s.strip()  # normalise() joined `4 4/9` into 44/9
    m = _MIXED.match(t)
    if m:
        num, den = (m.group(3), m.group(4)) if m.group(3) is not None else (m.group(5), m.group(6))
        if 0 < int(num) < int(den):
            v = int(m.group(2)) + Fraction(int(num), int(den))
            return (-v if m.group(1) == "-" else v), False
    if _THOUSANDS.match(s.strip()):  # not `32, 349`: with a space, that is a list
        t = t.replace(",", "")
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


def decimal_comma(s: str) -> Fraction | None:
    """`1000,99` and `0,111` as decimals; None for anything else (`1,000` is a thousand)."""
    m = _DECIMAL_COMMA.match(normalise(s))
    if m is None:
        return None
    whole, frac = m.group(1), m.group(2)
    if len(frac) == 3 and whole.lstrip("+-") not in ("0", ""):
        return None
    return Fraction(f"{whole}.{frac}")


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
