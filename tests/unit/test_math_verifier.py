"""The math verifier (real math-verify in real worker processes) and its hard-timeout pool."""

from __future__ import annotations

import faulthandler
import functools
import importlib.metadata
import math
import os
import subprocess
import sys
import threading
import time

import pytest
from pydantic import ValidationError

from factory.types import Completion, Prompt, Trace
from factory.verifiers import VERIFIERS
from factory.verifiers.math import MathParams, MathVerifier, exact_number, too_complex
from factory.verifiers.pool import HardTimeoutPool, PoolError

# The table runs on a shared, busy CPU: a generous limit keeps slow-but-fine cases off "timeout".
TABLE_TIMEOUT_S = 20.0
TIMEOUT_S = 2.0  # for the tests about timeouts


def trace(reference: str | None, answer: str | None) -> Trace:
    p = Prompt("p", 0, "problem", reference, [{"role": "user", "content": "problem"}], "test")
    c = Completion("p", 0, f"\\boxed{{{answer}}}" if answer and answer.strip() else "", "stop")
    return Trace(p, c, "", c.text, False, False, extracted_answer=answer)


# (reference, answer, passed, reason, why) -- one line per decision the verifier makes.
CASES: list[tuple[str | None, str | None, bool | None, str, str]] = [
    # correct
    ("\\frac{1}{2}", "0.5", True, "correct", "a fraction and its decimal (exact tier)"),
    ("0.5", "\\frac{1}{2}", True, "correct", "the same, the other way round"),
    ("1/2", "0.5", True, "correct", "slash fraction"),
    ("2\\sqrt{2}", "\\sqrt{8}", True, "correct", "radicals: symbolic tier"),
    ("3", "3.0", True, "correct", "integer vs decimal"),
    ("3", "x=3", True, "correct", "decided: an assignment names the answer"),
    ("x=3", "3", True, "correct", "... also when the reference is the assignment"),
    ("30^\\circ", "\\angle A = 30^\\circ", True, "correct", "symbols-only left side is an assignment"),
    ("[1, 2)", "[1,2)", True, "correct", "half-open interval"),
    ("(-\\infty, 3] \\cup [5, \\infty)", "(-\\infty,3]\\cup[5,\\infty)", True, "correct", "union"),
    ("\\{1, 2\\}", "\\{2, 1\\}", True, "correct", "sets are unordered"),
    ("\\{3\\}", "3", True, "correct", "a one-element set is its element"),
    ("\\frac{1}{3}", "0.333333", True, "correct", "a decimal that rounds from the fraction"),
    ("\\pi", "3.14159265", True, "correct", "a close decimal of an irrational"),
    ("x^2+2x+1", "(x+1)^2", True, "correct", "symbolic simplification"),
    ("3x-y+13=0", "-3x+y-13=0", True, "correct", "the same line"),
    ("50\\%", "50", True, "correct", "decided: a trailing percent sign is a unit"),
    ("\\dfrac{3}{4}", "\\frac{3}{4}", True, "correct", "string tier: \\dfrac is \\frac"),
    ("\\text{Monday}", "\\text{Monday}", True, "correct", "text answers, string tier"),
    ("1e-10", "10^{-10}", True, "correct", "e-notation is read as a power of ten"),
    ("1,000", "1000", True, "correct", "thousands separator"),
    ("\\frac{40}{9}", "4 4/9", True, "correct", "a mixed number"),
    ("918.5", "918\\frac{1}{2}", True, "correct", "a mixed number in LaTeX"),
    ("1000.99", "1000,99", True, "correct", "a decimal comma"),
    ("0.111", "0,111", True, "correct", "a decimal comma, three digits after a zero"),
    ("10455", "10,455", True, "correct", "thousands separator"),
    ("\\frac{1}{3}", "\\frac{1}{3},", True, "correct", "a trailing comma ends the sentence"),
    ("28\\%", "28 percent", True, "correct", "percent as a word"),
    ("28", "28 pct", True, "correct", "... and as an abbreviation (a unit)"),
    ("x = \\frac{1}{2}, x = \\frac{-1 \\pm \\sqrt{13}}{4}", "\\frac{-1 + \\sqrt{13}}{4}, \\frac{1}{2}, \\frac{-1 - \\sqrt{13}}{4}",
     True, "correct", "a list of solutions as the reference"),
    ("x \\in [-2, 7]", "-2 \\le x \\le 7", True, "correct", "the same solution set"),
    ("1 - \\frac{1}{\\mathrm{e}}", "1 - \\frac{1}{e}", True, "correct", "upright e is Euler's e"),
    ("2\\pi", "2 pi", True, "correct", "pi written as a word"),
    # wrong
    ("7", "8", False, "wrong_answer", "plain integers (exact tier)"),
    # a dropped sign, term or factor is never accepted (the parser once stopped at \\mathrm{e})
    ("1 - \\frac{1}{\\mathrm{e}}", "1 + \\frac{1}{\\mathrm{e}}", False, "wrong_answer", "sign before an upright e"),
    ("1-\\mathrm{e}^{-1}", "1+\\mathrm{e}", False, "wrong_answer", "upright e, sign and exponent"),
    ("1-\\mathrm{e}^{-1}", "1", False, "wrong_answer", "the whole e term dropped"),
    ("3\\mathrm{e}^{2}", "3", False, "wrong_answer", "a factor e^2 dropped"),
    ("2\\mathrm{i}+1", "2\\mathrm{i}-1", False, "wrong_answer", "upright i, sign"),
    ("2\\mathrm{i}+1", "1", False, "wrong_answer", "the imaginary term dropped"),
    ("2\\pi + 1", "2 pi - 1", False, "wrong_answer", "pi as text, sign"),
    ("\\text{pi} + 1", "1", False, "wrong_answer", "\\text{pi} dropped"),
    ("\\operatorname{arcsin}(x) + 1", "\\arcsin(x) - 1", False, "wrong_answer", "operatorname, sign"),
    ("\\operatorname{arcsin}(x) + 1", "1", False, "wrong_answer", "operatorname term dropped"),
    ("1 + \\frac{1}{\\mathrm{e}}", "1", False, "wrong_answer", "the reference's e term dropped"),
    ("\\frac{1}{3}", "0.33", False, "wrong_answer", "too short a decimal"),
    ("\\pi", "3.14", False, "wrong_answer", "too short a decimal of pi"),
    ("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}", False, "wrong_answer", "math-verify #14: tiny values"),
    ("\\frac{1}{2004!}", "\\frac{1}{2006!}", False, "wrong_answer", "#14 again: survives precision 50"),
    ("\\frac{2^{2005}+1}{3 \\cdot 2^{2006}}", "\\frac{1}{3 \\cdot 2^{2006}}", False, "wrong_answer",
     "#14: relative error 2^-2005 is still an error"),
    ("0.0000000001", "0.0000000002", False, "wrong_answer", "rounding to 6 places says equal"),
    ("10^{-10}", "2\\times 10^{-10}", False, "wrong_answer", "tiny exact values"),
    ("(1,2)", "\\{1,2\\}", False, "wrong_answer", "an open interval is not a set"),
    ("\\{1,2\\}", "(1,2)", False, "wrong_answer", "... nor the other way round"),
    ("(1,2)", "1, 2", True, "correct", "decided: a bare list in order stands for the pair"),
    ("(1,2)", "2, 1", False, "wrong_answer", "... not in another order"),
    ("(1,3)", "{1,3}", True, "correct", "a brace group is a LaTeX group, not the set \\{1,3\\}"),
    ("(1,2)", "(2,1)", False, "wrong_answer", "ordered pairs"),
    ("3x-y+13=0", "3x+4y+14=0", False, "wrong_answer", "math-verify #60: both '= 0'"),
    ("0", "3x+4y+14=0", False, "wrong_answer", "an equation is not its right-hand side"),
    ("x=3", "y=3", False, "wrong_answer", "different variables"),
    ("n=2, 3, 4", "n=1, 2, 3", False, "wrong_answer", "#14: the sets differ"),
    ("\\pm 2021", "2021", False, "wrong_answer", "one root of two"),
    ("50\\%", "0.5", False, "wrong_answer", "decided: percent is a unit, not x/100"),
    ("(-\\infty, 3] \\cup [5, \\infty)", "(-\\infty,3)\\cup[5,\\infty)", False, "wrong_answer", "open end"),
    ("1", "\x00\x01\x02garbage", False, "unparseable_answer", "binary garbage, no sympy"),
    ("1", "\\frac{1}{", False, "unparseable_answer", "unbalanced braces, no sympy"),
    ("5", None, False, "no_answer", "nothing was extracted"),
    ("5", "   ", False, "no_answer", "blank"),
    # cannot tell: never "correct"
    (None, "5", None, "no_reference", "the dataset has no answer"),
    ("@@@", "@@@", None, "unparseable_reference", "a reference that does not parse"),
    ("\\frac{1}{", "\\frac{1}{", None, "unparseable_reference", "unbalanced reference"),
    ("\x00\xff", "1", None, "unparseable_reference", "binary reference"),
    ("1", "9^{9^{9^{9}}}", None, "answer_too_complex", "power tower: 10^(3.7e8) digits"),
    ("1", "2^{10^{9}}", None, "answer_too_complex", "huge exponent"),
    ("1", "9**9**9", None, "answer_too_complex", "plain-notation tower"),
    ("1", "(10^{6})!", None, "answer_too_complex", "huge factorial"),
    ("1", "100000!", None, "answer_too_complex", "huge factorial literal"),
    ("1", "x+" * 5_000 + "1", None, "answer_too_long", "a 10,000-character expression"),
    ("9^{9^{9}}", "1", None, "reference_too_complex", "the reference itself is a tower"),
]


@pytest.fixture(scope="module")
def verifier():
    v = MathVerifier(MathParams(workers=2, timeout_s=TABLE_TIMEOUT_S), {})
    yield v
    v.close()


@pytest.fixture(scope="module")
def short_verifier():
    v = MathVerifier(MathParams(workers=1, timeout_s=TIMEOUT_S), {})
    v.verify(trace("\\sqrt{4}", "2"))  # start the worker off the clock
    yield v
    v.close()


@pytest.fixture(scope="module")
def table_verdicts(verifier):
    return verifier.verify_many([trace(r, a) for r, a, *_ in CASES])


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c[4] for c in CASES])
def test_table(table_verdicts, i: int) -> None:
    ref, ans, passed, reason, why = CASES[i]
    v = table_verdicts[i]
    assert (v.name, v.passed, v.reason) == ("math", passed, reason), why


def test_adversarial_inputs_finish_within_the_limit(short_verifier) -> None:
    answers = [
        "9^{9^{9^{9}}}",
        "x+" * 5_000 + "1",
        "\\frac{" * 3_000,
        "{" * 900,
        "\\sqrt{" * 45 + "2" + "}" * 45,  # deeper than the parser's nesting guard
        os.urandom(900).decode("latin-1"),
        "10^{10^{10}}",
        "\\frac{1}{2}" * 90,  # under the length cap, reaches sympy
        "(x+1)^{5000}-(x-1)^{5000}",  # reaches sympy, expands for minutes there
    ]
    start = time.monotonic()
    verdicts = short_verifier.verify_many([trace("\\sqrt{2}", a) for a in answers])
    elapsed = time.monotonic() - start
    assert len(verdicts) == len(answers)
    assert all(v.passed is not True for v in verdicts)
    # Two items reach sympy on one worker; each is cut off at TIMEOUT_S at the latest.
    assert elapsed < 2 * TIMEOUT_S + 3, elapsed
    assert (verdicts[-1].passed, verdicts[-1].reason) == (None, "timeout")
    # A slow pair is cut off alone: the next one, and the pool, are fine.
    slow_then_fine = short_verifier.verify_many(
        [trace("(x+1)^{999}", "(x+2)^{999}"), trace("2\\sqrt{2}", "\\sqrt{8}")]
    )
    assert [(v.passed, v.reason) for v in slow_then_fine] == [(None, "timeout"), (True, "correct")]


def test_verify_many_from_a_non_main_thread(verifier) -> None:
    # math-verify's own timeout (signal.alarm) raises outside the main thread; ours must not.
    got: list = []
    t = threading.Thread(
        target=lambda: got.append(verifier.verify_many([trace("\\sqrt{8}", "2\\sqrt{2}"), trace("3", "4")]))
    )
    t.start()
    t.join(60)
    assert [(v.passed, v.reason) for v in got[0]] == [(True, "correct"), (False, "wrong_answer")]


def test_duplicates_in_a_batch_are_verified_once(verifier) -> None:
    before = verifier._get_pool().stats["tasks"]
    verdicts = verifier.verify_many([trace("\\sqrt{12}", "2\\sqrt{3}")] * 8)
    assert {(v.passed, v.reason) for v in verdicts} == {(True, "correct")}
    assert verifier._get_pool().stats["tasks"] - before <= 1


def test_describe_has_versions_and_params() -> None:
    d = MathVerifier(MathParams(), {}).describe()
    assert d["name"] == "math"
    assert d["math_verify"] == importlib.metadata.version("math-verify")
    assert d["params"]["numeric_precision"] > 15  # above math-verify's default


def test_params_and_workers() -> None:
    with pytest.raises(ValidationError):
        MathParams(timeout=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        MathParams(extraction="first_number")
    assert MathVerifier(MathParams(), {"verify_workers": 3}).workers == 3
    assert MathVerifier(MathParams(workers=5), {"verify_workers": 3}).workers == 5
    assert MathVerifier(MathParams(), {}).workers == (os.cpu_count() or 1)
    assert VERIFIERS.get("math") is MathVerifier


def test_cheap_guards() -> None:
    assert too_complex("2^{2^{3}}") is None  # 256 is fine
    assert too_complex("10^{100}") is None
    assert too_complex("2004!") is None
    assert too_complex("[1, 2)") is None
    assert too_complex("\\{1\\}") is None
    assert too_complex("{1") == "unbalanced"
    assert too_complex("2^{-10^{7}}") == "power_too_large"
    assert exact_number("-\\frac{3}{4}") == (exact_number("-0.75")[0], False)  # type: ignore[index]
    assert exact_number("x") is None and exact_number("1/0") is None


def test_importing_the_module_does_not_import_math_verify() -> None:
    code = (
        "import sys, factory.verifiers.math, factory.verifiers.format, factory.verifiers.parsing; "
        "assert 'math_verify' not in sys.modules and 'sympy' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- the pool ----------------------------------------------------------------------------------
# "operator:call" calls each item, so one pool can be fed items that succeed, raise, hang, exit
# and segfault.


def test_pool_kills_stuck_and_dead_workers_and_goes_on() -> None:
    items = [
        functools.partial(math.sqrt, 4),
        functools.partial(time.sleep, 60),  # stuck: killed at the timeout
        faulthandler._sigsegv,  # segfault
        functools.partial(os._exit, 3),  # dies
        functools.partial(math.sqrt, -1),  # raises: an error result, the worker lives
    ] + [functools.partial(math.sqrt, 9)] * 6
    with HardTimeoutPool("operator:call", workers=2, timeout_s=1.0) as pool:
        start = time.monotonic()
        res = pool.map(items)
        elapsed = time.monotonic() - start
        assert res[0].ok and res[0].value == 2.0
        assert res[1].timed_out and 1.0 <= res[1].elapsed_s < 3.0
        assert not res[2].timed_out and "exit code -11" in (res[2].error or "")
        assert "exit code 3" in (res[3].error or "")
        assert (res[4].error or "").startswith("ValueError")
        assert all(r.ok and r.value == 3.0 for r in res[5:])
        assert [r.index for r in res] == list(range(len(items)))
        assert elapsed < 15, elapsed  # the stuck item did not hold the others back
        assert pool.stats["timeouts"] == 1 and pool.stats["deaths"] == 2
        # The pool goes on, also from another thread.
        out: list = []
        t = threading.Thread(target=lambda: out.append(pool.map([functools.partial(math.sqrt, 16)] * 4)))
        t.start()
        t.join(60)
        assert [r.value for r in out[0]] == [4.0] * 4


def test_pool_refuses_a_function_that_does_not_import() -> None:
    with HardTimeoutPool("factory.no_such_module:f", workers=1, timeout_s=1.0) as pool:
        with pytest.raises(PoolError, match="no_such_module"):
            pool.map([1])
    with pytest.raises(ValueError):
        HardTimeoutPool("operator:call", start_method="fork")
    with pytest.raises(PoolError):
        pool.map([1])  # closed


def test_percent_against_a_decimal_only_when_the_problem_asks_for_a_percentage(verifier) -> None:
    def t(problem: str, reference: str, answer: str) -> Trace:
        p = Prompt("p", 0, problem, reference, [], "test")
        c = Completion("p", 0, f"\\boxed{{{answer}}}", "stop")
        return Trace(p, c, "", c.text, False, False, extracted_answer=answer)

    got = verifier.verify_many([
        t("By what percent did the price fall?", "0.28", "28\\%"),
        t("By what percent did the price fall?", "0.28", "28 percent"),
        t("What fraction of the price is left?", "0.28", "28\\%"),  # a percent is a unit here
        t("By what percent did the price fall?", "0.28", "27\\%"),
    ])
    assert [v.passed for v in got] == [True, True, False, False]


def test_the_reason_names_the_extraction(verifier) -> None:
    from factory.verifiers.parsing import make_trace

    def run(reference: str, text: str):
        p = Prompt("p", 0, "problem", reference, [], "test")
        return make_trace(p, Completion("p", 0, text, "stop"))

    texts = [
        ("{1, 2, 3}", "So $x \\in \\{1,2,3\\}$: \\boxed{1}, \\boxed{2} and \\boxed{3}.", (True, "correct (boxes)")),
        ("5", "We get \\boxed{5}.", (True, "correct (boxed)")),
        ("10455", "\\boxed{10200}. Wait, I forgot the interest: the final answer is $10,455$.",
         (True, "correct (answer_is)")),
        ("34", "Checking every case, the largest $n$ is 34.", (True, "correct (math_verify)")),
        ("34", "34", (True, "correct (whole_text)")),
        ("34", "Checking every case, the largest $n$ is $35$.", (False, "wrong_answer (math_verify)")),
        ("\\frac{1}{3}", "\\boxed{\\frac{1}{3},}", (True, "correct (boxed)")),
    ]
    got = verifier.verify_many([run(r, t) for r, t, _ in texts])
    assert [(v.passed, v.reason) for v in got] == [want for _, _, want in texts]
    strict = MathVerifier(MathParams(workers=1, prose_answers=False), {})
    try:
        v = strict.verify(run("34", "Checking every case, the largest $n$ is $34$."))
        assert (v.passed, v.reason) == (False, "no_answer")
    finally:
        strict.close()
