"""How often verdicts agree with labelled expectations: a user's own `expected` column in
`factory verify`, or the public grader suites under tests/data/graders.

A verdict that could not tell (passed None: timeout, unparseable reference) is no accept: it
counts as a reject, and once more under `cannot_tell` so that it is never mistaken for a judgement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EXPECTED_COLUMN = "expected"  # an input column with the verdict each row should get

_TRUE = {"true", "1", "yes", "y", "correct", "accept", "accepted", "pass", "passed"}
_FALSE = {"false", "0", "no", "n", "wrong", "incorrect", "reject", "rejected", "fail", "failed"}


def parse_expected(value: Any) -> bool | None:
    """An `expected` cell as a verdict: booleans, 0/1, and the usual words; None when blank or
    not a verdict (such a row is left out of the figures, not guessed)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
    return None


@dataclass
class Agreement:
    labelled: int = 0  # rows with an expected verdict
    agree: int = 0
    false_accepts: int = 0  # expected wrong, accepted: the costly kind for a dataset
    false_rejects: int = 0
    cannot_tell: int = 0  # passed None (timeout, unparseable reference...), counted as a reject

    def add(self, expected: bool, passed: bool | None) -> None:
        self.labelled += 1
        accepted = passed is True
        if passed is None:
            self.cannot_tell += 1
        if accepted == expected:
            self.agree += 1
        elif accepted:
            self.false_accepts += 1
        else:
            self.false_rejects += 1

    def add_row(self, expected_value: Any, row: dict[str, Any], advisory: frozenset[str]) -> None:
        """One verified row (`accepted`, `verdicts`) against its `expected` cell; a blank or
        unreadable label is left out, not guessed."""
        expected = parse_expected(expected_value)
        if expected is None:
            return
        unsure = any(v["passed"] is None and v["name"] not in advisory for v in row["verdicts"])
        self.add(expected, True if row["accepted"] else (None if unsure else False))

    @property
    def rate(self) -> float:
        return self.agree / self.labelled if self.labelled else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"labelled": self.labelled, "agree": self.agree, "agreement": round(self.rate, 4),
                "false_accepts": self.false_accepts, "false_rejects": self.false_rejects,
                "cannot_tell": self.cannot_tell}

    def summary(self) -> str:
        return (f"agreement {self.agree}/{self.labelled} = {self.rate:.3f}; false accepts "
                f"{self.false_accepts}, false rejects {self.false_rejects}, cannot tell {self.cannot_tell}")
