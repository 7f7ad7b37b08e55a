"""Input rows rejected before any engine sees them: a count per reason and where the first one was."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# Reasons that say a row is a repeat, not that it is broken: reported, never held against the input.
BENIGN_REASONS = frozenset({"duplicate_id"})


@dataclass
class Rejects:
    label: str  # the input as a user names it: a path, "builtin:arithmetic", "org/name"
    counts: Counter = field(default_factory=Counter)
    first: dict[str, str] = field(default_factory=dict)  # reason -> "file:line" of its first row

    def add(self, reason: str, line: int | None = None) -> None:
        self.counts[reason] += 1
        if reason not in self.first and line is not None:
            self.first[reason] = f"{self.label}:{line}"

    def harmful(self) -> int:
        return sum(n for r, n in self.counts.items() if r not in BENIGN_REASONS)

    def describe(self) -> str:
        """`not_utf8 x8 (first at data.jsonl:3), missing_reference x1 (first at data.jsonl:9)`"""
        parts = []
        for reason, n in self.counts.most_common():
            where = f" (first at {self.first[reason]})" if reason in self.first else ""
            parts.append(f"{reason} x{n}{where}")
        return ", ".join(parts)
