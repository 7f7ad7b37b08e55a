"""The math verifier against public grader test suites, scored beside math-verify alone.

tests/data/graders/*.jsonl holds (gold, prediction, expected verdict) cases converted from the
test suites of Math-Verify, open-r1, NeMo-Skills and hendrycks/math (each case names its
repository, commit, file, test and line; see tests/data/graders/README.md). The whole pipeline
runs as in a real run: the prediction is a completion, answers are extracted from it with the
default extraction, and the `math` verifier with its default parameters judges it. math-verify
is called directly (`parse` + `verify`, default settings) on the same pairs.

Cases where this project's policy differs from a suite on purpose carry a `policy` entry (the
verdict we give and why); they are scored apart, against that verdict.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import pytest

from factory.reverify.agreement import Agreement
from factory.types import Completion, Prompt
from factory.verifiers.math import MathParams, MathVerifier
from factory.verifiers.parsing import make_trace

GRADERS = Path(__file__).resolve().parents[1] / "data" / "graders"


def load_cases() -> list[dict]:
    cases = []
    for path in sorted(GRADERS.glob("*.jsonl")):
        cases += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return cases


CASES = load_cases()


def math_verify_alone(gold: str, prediction: str) -> bool:
    from math_verify import parse, verify

    try:
        return bool(verify(parse(gold), parse(prediction)))
    except Exception:  # a crash is no accept
        return False


@pytest.fixture(scope="module")
def scored() -> dict:
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    verifier = MathVerifier(MathParams(workers=2, timeout_s=20.0), {})
    try:
        traces = [
            make_trace(Prompt(f"p{i}", i, "", c["gold"], [], "graders"),
                       Completion(f"p{i}", 0, c["prediction"], "stop"))
            for i, c in enumerate(CASES)
        ]
        verdicts = verifier.verify_many(traces)
    finally:
        verifier.close()
    ours: dict[str, Agreement] = defaultdict(Agreement)
    theirs: dict[str, Agreement] = defaultdict(Agreement)
    policy_misses = []
    for case, verdict in zip(CASES, verdicts, strict=True):
        if "policy" in case:
            if (verdict.passed is True) != case["policy"]["verdict"]:
                policy_misses.append((case["source"], verdict.reason))
            continue
        ours[case["suite"]].add(case["expected"], verdict.passed)
        theirs[case["suite"]].add(case["expected"], math_verify_alone(case["gold"], case["prediction"]))
    return {"ours": ours, "theirs": theirs, "policy_misses": policy_misses}


def test_fixture_is_attributed_and_large_enough() -> None:
    assert len(CASES) >= 300
    for c in CASES:
        src = c["source"]
        assert src["repo"] and len(src["commit"]) == 40 and src["path"] and src["test"] and src["line"] > 0
        assert isinstance(c["expected"], bool) and c["gold"] is not None and c["prediction"] is not None


@pytest.mark.parametrize("suite", sorted({c["suite"] for c in CASES}))
def test_agrees_at_least_as_often_as_math_verify(scored: dict, suite: str) -> None:
    ours, theirs = scored["ours"][suite], scored["theirs"][suite]
    print(f"{suite}: factory {ours.summary()} | math-verify {theirs.summary()}")
    assert ours.labelled == theirs.labelled > 0
    assert ours.rate >= theirs.rate, (ours.as_dict(), theirs.as_dict())
    assert ours.false_accepts <= theirs.false_accepts, (ours.as_dict(), theirs.as_dict())


def test_policy_cases_get_the_policy_verdict(scored: dict) -> None:
    assert sum("policy" in c for c in CASES) >= 3
    assert scored["policy_misses"] == []
