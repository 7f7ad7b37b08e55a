"""What the report draws, gathered from a version's `all` Parquet files one row group at a time.

A version can hold millions of rows; this holds per distinct (accepted, samples) pair and per
distinct token count a counter, and a handful of example rows, never a row group beyond the one
being read. The per-prompt counts behind the pairs come from the version build's scan, which has
them already; read alone (`collect` without them), the files' prompts are counted here, in a dict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

COLUMNS = ["prompt_id", "sample_index", "accepted", "reject_reason", "num_tokens", "prompt_tokens",
           "finish_reason"]
EXAMPLE_COLUMNS = ["prompt_id", "sample_index", "problem", "reference", "completion", "extracted_answer",
                   "finish_reason", "num_tokens", "reject_reason"]
EXAMPLE_CHARS = 600  # per text field of an example row: the card shows a taste, the viewer the rest
MAX_EXAMPLE_REASONS = 64  # reasons we keep a first row for; the card shows the most common few
ACCEPTED = "accepted"


@dataclass
class ReportData:
    """Aggregates of a version's rows; `budget` is sampling.max_tokens (None if unrecorded)."""

    budget: int | None = None
    round_size: int | None = None  # adaptive sampling: samples per round
    pass_counts: Counter = field(default_factory=Counter)  # (accepted, samples) -> prompts
    per_prompt: dict[str, list[int]] | None = None  # prompt_id -> [accepted, samples], while counted here
    tokens_accepted: Counter = field(default_factory=Counter)  # num_tokens -> rows
    tokens_rejected: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)  # verifier:reason -> rejected rows
    # (round, outcome) -> output tokens; outcome is "accepted" or the reject reason
    token_spend: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    output_tokens: int = 0
    rows: int = 0
    examples: dict[str, dict[str, Any]] = field(default_factory=dict)  # "accepted" / reason -> row

    @property
    def rounds(self) -> int:
        return 1 + max((r for r, _ in self.token_spend), default=0)

    def add(self, batch: pa.Table) -> dict[str, int]:
        """One row group's light columns; returns the outcomes seen for the first time, with the
        index of their first row (the caller reads that group's text columns only then)."""
        self.rows += batch.num_rows
        acc = pc.fill_null(batch["accepted"], False)
        tokens = pc.fill_null(batch["num_tokens"], 0)
        self.output_tokens += int(pc.sum(tokens).as_py() or 0)
        self.prompt_tokens += int(pc.sum(pc.fill_null(batch["prompt_tokens"], 0)).as_py() or 0)
        for item in pc.value_counts(tokens.filter(acc)).to_pylist():
            self.tokens_accepted[item["values"]] += item["counts"]
        rejected = pc.invert(acc)
        for item in pc.value_counts(tokens.filter(rejected)).to_pylist():
            self.tokens_rejected[item["values"]] += item["counts"]
        reasons = pc.fill_null(batch["reject_reason"], "unknown")
        outcome = pc.if_else(acc, ACCEPTED, reasons)
        for item in pc.value_counts(reasons.filter(rejected)).to_pylist():
            self.reasons[item["values"]] += item["counts"]
        rounds = (pc.divide(pc.cast(batch["sample_index"], pa.int64()), self.round_size)
                  if self.round_size else pa.repeat(0, batch.num_rows))
        spend = pa.table({"round": rounds, "outcome": outcome, "tokens": pc.cast(tokens, pa.int64())})
        g = spend.group_by(["round", "outcome"]).aggregate([("tokens", "sum")])
        for r, o, n in zip(g["round"].to_pylist(), g["outcome"].to_pylist(), g["tokens_sum"].to_pylist()):
            self.token_spend[(int(r or 0), o)] += int(n or 0)
        if self.per_prompt is not None:
            self._count_prompts(batch["prompt_id"], acc)
        return {o: pc.index(outcome, o).as_py() for o in pc.unique(outcome).to_pylist()
                if o not in self.examples and len(self.examples) < MAX_EXAMPLE_REASONS}

    def _count_prompts(self, prompt_ids: pa.ChunkedArray, acc: pa.ChunkedArray) -> None:
        assert self.per_prompt is not None
        per = pa.table({"p": prompt_ids, "a": pc.cast(acc, pa.int64())})
        g = per.group_by("p").aggregate([("a", "sum"), ("a", "count")])
        for pid, a, n in zip(g["p"].to_pylist(), g["a_sum"].to_pylist(), g["a_count"].to_pylist()):
            slot = self.per_prompt.get(pid)
            if slot is None:
                self.per_prompt[pid] = [a, n]
            else:
                slot[0] += a
                slot[1] += n

    def keep_examples(self, rows: pa.Table, wanted: dict[str, int]) -> None:
        """The first row of each outcome (accepted, each reject reason), texts cut short."""
        for o, index in wanted.items():
            row = rows.slice(index, 1).select(EXAMPLE_COLUMNS).to_pylist()[0]
            for k, v in row.items():
                if isinstance(v, str) and len(v) > EXAMPLE_CHARS:
                    row[k] = v[:EXAMPLE_CHARS] + " [...]"
            self.examples[o] = row

    def pass_rates(self) -> Counter:
        """pass rate -> how many prompts have it."""
        rates: Counter = Counter()
        for (a, n), prompts in self.pass_counts.items():
            if n:
                rates[a / n] += prompts
        return rates

    def chosen_examples(self, reasons: int = 3) -> list[dict[str, Any]]:
        """One accepted row, then one row for each of the most common reject reasons."""
        out = []
        if ACCEPTED in self.examples:
            out.append({"outcome": ACCEPTED, **self.examples[ACCEPTED]})
        for reason, _ in self.reasons.most_common(reasons):
            if reason in self.examples:
                out.append({"outcome": "rejected", **self.examples[reason]})
        return out


def round_size_of(sampling: dict[str, Any]) -> int | None:
    """Samples per round of adaptive sampling (None: one round of n)."""
    if not sampling.get("stop_after_accepted"):
        return None
    return int(sampling.get("round_size") or sampling["stop_after_accepted"])


def collect(files: Iterable[Path], sampling: dict[str, Any],
            prompt_counts: Iterable[tuple[int, int]] | None = None) -> ReportData:
    """One pass over `all` files, a row group at a time; `prompt_counts`, (accepted, samples) of
    every prompt of those files, where the caller has them (else they are counted here)."""
    budget = sampling.get("max_tokens")
    data = ReportData(budget=int(budget) if budget else None, round_size=round_size_of(sampling),
                      per_prompt={} if prompt_counts is None else None)
    if prompt_counts is not None:
        data.pass_counts.update(prompt_counts)
    for path in files:
        with pq.ParquetFile(path) as f:
            for i in range(f.metadata.num_row_groups):
                new = data.add(f.read_row_group(i, columns=COLUMNS, use_threads=False))
                if new:  # the text columns (the bulk of the bytes) of the first groups only
                    data.keep_examples(f.read_row_group(i, columns=EXAMPLE_COLUMNS, use_threads=False), new)
    if data.per_prompt is not None:
        data.pass_counts.update(tuple(c) for c in data.per_prompt.values())
        data.per_prompt = None
    return data
