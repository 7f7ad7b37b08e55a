"""Math verdicts do not depend on how busy the machine is (issue 15).

The same pairs are verified twice: with one worker on an otherwise quiet machine, and with two
workers beside two processes that spin on the CPU. The soft deadline counts each worker's own CPU
time, and a comparison killed on the wall clock is retried alone, so the verdicts are the same,
timeouts included. Run it under the heavy lock: it loads the machine on purpose.
"""

from __future__ import annotations

import subprocess
import sys

from factory.types import Completion, Prompt, Trace
from factory.verifiers.math import MathParams, MathVerifier

PAIRS = [
    ("\\frac{1}{2}", "0.5"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("x^2+2x+1", "(x+1)^2"),
    ("(x+1)^{12}", "\\sum_{k=0}^{12} \\binom{12}{k} x^k"),
    ("\\frac{\\pi}{4}", "\\arctan(1)"),
    ("\\{1, 2, 3\\}", "3, 2, 1"),
    ("(1, 2)", "(2, 1)"),
    ("1 - \\frac{1}{\\mathrm{e}}", "1 + \\frac{1}{\\mathrm{e}}"),
    ("\\sin^2 x + \\cos^2 x", "1"),
    ("\\int_0^1 x^2 dx", "\\frac{1}{3}"),
    ("x \\in [-2, 7]", "-2 \\le x \\le 7"),
    ("\\sqrt{2}", "(x+1)^{4000}-(x-1)^{4000}"),  # expands for minutes: a timeout, both times
]


def trace(i: int, reference: str, answer: str) -> Trace:
    p = Prompt(f"p{i}", i, "problem", reference, [], "test")
    c = Completion(f"p{i}", 0, f"\\boxed{{{answer}}}", "stop")
    return Trace(p, c, "", c.text, False, False, extracted_answer=answer, extraction="boxed")


def verdicts(workers: int) -> list[tuple[bool | None, str | None]]:
    v = MathVerifier(MathParams(workers=workers, timeout_s=2.0), {})
    try:
        return [(x.passed, x.reason) for x in v.verify_many([trace(i, r, a) for i, (r, a) in enumerate(PAIRS)])]
    finally:
        v.close()


def test_verdicts_are_the_same_idle_and_loaded() -> None:
    idle = verdicts(1)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        loaded = verdicts(2)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert loaded == idle
    assert idle[-1] == (None, "timeout (boxed)")  # cannot tell: not a wrong answer
    assert idle[0] == (True, "correct (boxed)") and idle[7] == (False, "wrong_answer (boxed)")
