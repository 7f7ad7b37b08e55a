"""Live progress (prompts done, output tokens/s, acceptance so far) and the end-of-run summary."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from factory import terminal


@dataclass
class RunStats:
    prompts_total: int = 0
    prompts_done: int = 0
    generations: int = 0
    accepted: int = 0
    tokens_out: int = 0
    tokens_in: int = 0
    rejected: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)
    gen_started: float | None = None
    gen_finished: float | None = None
    engine_ready_s: float | None = None
    live_requests: int = 0  # polled from the engines while they work
    live_tokens: int = 0
    retired_requests: int = 0  # counters of replicas that were replaced
    retired_tokens: int = 0
    first_accept_s: float | None = None
    first_verified_s: float | None = None  # the first trace through every verifier, accepted or not
    last_completion_at: float | None = None  # when the engines handed back their last completion
    prompts_resumed: int = 0  # done by an earlier attempt of a resumed run: not part of this run's rate
    verification: dict[str, Any] = field(default_factory=dict)  # where traces were verified, by how many
    first_request_at: float | None = None  # Unix time of the first request sent: a restart's delay
    asked_ahead: int = 0  # adaptive sampling: samples asked for before their prompt's verdict (run.sample_ahead)

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        self.generations += len(rows)
        if rows and self.first_verified_s is None:
            self.first_verified_s = time.perf_counter() - self.started
        for r in rows:
            self.tokens_out += r["num_tokens"] or 0
            self.tokens_in += r["prompt_tokens"] or 0
            if r["accepted"]:
                self.accepted += 1
                if self.first_accept_s is None:
                    self.first_accept_s = time.perf_counter() - self.started
            else:
                self.rejected[r["reject_reason"]] += 1

    def add_table(self, t: Any) -> None:
        """`add_rows` for a PART_SCHEMA table: reads five columns, never builds a row."""
        self.generations += t.num_rows
        if t.num_rows and self.first_verified_s is None:
            self.first_verified_s = time.perf_counter() - self.started
        import pyarrow.compute as pc

        self.tokens_out += pc.sum(t["num_tokens"]).as_py() or 0
        self.tokens_in += pc.sum(t["prompt_tokens"]).as_py() or 0
        accepted = pc.sum(t["accepted"]).as_py() or 0
        if accepted:
            self.accepted += accepted
            if self.first_accept_s is None:
                self.first_accept_s = time.perf_counter() - self.started
        if accepted < t.num_rows:
            rejected = t.filter(pc.invert(pc.fill_null(t["accepted"], False)))["reject_reason"]
            for reason, n in _counts(rejected):
                self.rejected[reason] += n

    def gen_seconds(self) -> float:
        if self.gen_started is None:
            return 0.0
        return (self.gen_finished or time.perf_counter()) - self.gen_started

    def tokens_per_s(self) -> float:
        s = self.gen_seconds()
        return max(self.tokens_out, self.live_tokens) / s if s > 0 else 0.0

    def eta_seconds(self) -> float | None:
        """Seconds until every prompt is done at the rate so far; None until the rate is known
        (no prompt finished yet in this run)."""
        left = self.prompts_total - self.prompts_done
        done_here = self.prompts_done - self.prompts_resumed
        s = self.gen_seconds()
        if left <= 0:
            return 0.0
        if done_here <= 0 or s <= 0:
            return None
        return left * s / done_here

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts_total,
            "prompts_generated_this_run": self.prompts_done,
            "generations": self.generations,
            "accepted": self.accepted,
            "rejected": dict(self.rejected),
            "tokens_out": self.tokens_out,
            "tokens_in": self.tokens_in,
            "generation_s": round(self.gen_seconds(), 3),
            "tokens_per_s": round(self.tokens_per_s(), 2),
            "wall_s": round(time.perf_counter() - self.started, 3),
            "engine_ready_s": None if self.engine_ready_s is None else round(self.engine_ready_s, 3),
            "first_accept_s": None if self.first_accept_s is None else round(self.first_accept_s, 3),
            "first_verified_s": None if self.first_verified_s is None else round(self.first_verified_s, 3),
            "tail_s": round(self.tail_seconds(), 3),
            "verification": self.verification,
            "first_request_at": self.first_request_at,
            "asked_ahead": self.asked_ahead,
        }

    def tail_seconds(self) -> float:
        """From the engines' last completion to the last committed part: what the run adds after them."""
        if self.gen_finished is None or self.last_completion_at is None:
            return 0.0
        return max(0.0, self.gen_finished - self.last_completion_at)


def _counts(column: Any) -> list[tuple[Any, int]]:
    import pyarrow.compute as pc

    return [(d["values"], d["counts"]) for d in pc.value_counts(column).to_pylist()]


class ProgressView:
    """A rich bar on a terminal; a plain line every few seconds in logs (CI, Ray jobs)."""

    def __init__(self, stats: RunStats, enabled: bool = True):
        self.stats = stats
        self.console = Console(file=terminal.stderr())
        self.enabled = enabled
        self._bar: Progress | None = None
        self._last_line = 0.0

    def __enter__(self) -> "ProgressView":
        if self.enabled and self.console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(), TextColumn("prompts"),
                TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[acc]}"), TimeElapsedColumn(),
                console=self.console,
                # Quiet: sys.stdout/stderr lead to the run's log. Rich would otherwise proxy them onto
                # the terminal while the bar is live (Ray prints its workers' output through them).
                redirect_stdout=terminal.log_path() is None, redirect_stderr=terminal.log_path() is None,
            )
            self._bar.start()
            self._task = self._bar.add_task("gen", total=self.stats.prompts_total, rate="", acc="")
        return self

    def update(self) -> None:
        s = self.stats
        rate = f"{s.tokens_per_s():,.0f} tok/s"
        eta = s.eta_seconds()
        acc = f"{s.live_requests} samples, accepted {s.accepted}/{s.generations} verified" + (
            f" ({100 * s.accepted / s.generations:.0f}%)" if s.generations else "") + (
            f", ETA {format_duration(eta)}" if eta is not None else "")
        if self._bar is not None:
            self._bar.update(self._task, completed=s.prompts_done, rate=rate, acc=acc)
        elif self.enabled and time.perf_counter() - self._last_line > 10:
            self._last_line = time.perf_counter()
            print(f"generate: {s.prompts_done}/{s.prompts_total} prompts, {rate}, {acc}", file=terminal.stderr(),
                  flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def format_duration(seconds: float) -> str:
    """1h02m, 3m05s, 42s."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def _secs(x: float | None, none: str = "-") -> str:
    """A duration for the table; "-" when it never happened (0.0 would claim it did, at once)."""
    return none if x is None else f"{x:.1f}"


def summary_table(manifest: dict[str, Any]) -> Table:
    """The table printed at the end of a run: what a dataset builder reads first."""
    c, st = manifest.get("counts", {}), manifest.get("run_stats", {})
    t = Table(title=f"{manifest.get('name')} {manifest.get('version')}", show_header=True)
    t.add_column("stage")
    t.add_column("count", justify="right")
    t.add_row("prompts", f"{c.get('prompts', 0):,}")
    for reason, n in sorted((st.get("input_rejected") or {}).items()):
        t.add_row(f"  input rejected: {reason}", f"{n:,}")
    for reason, n in sorted((st.get("prefiltered") or {}).items()):
        t.add_row(f"  prefiltered: {reason}", f"{n:,}")
    t.add_row("generations", f"{c.get('generations', 0):,}")
    t.add_row("accepted", f"{c.get('accepted', 0):,}")
    t.add_row("rejected", f"{c.get('rejected', 0):,}")
    for reason, n in sorted((c.get("rejected_by_reason") or {}).items(), key=lambda kv: -kv[1]):
        t.add_row(f"  {reason}", f"{n:,}")
    for name, n in sorted((c.get("verifiers") or {}).items()):
        t.add_row(f"verifier {name}", f"{n.get('passed', 0):,} passed / {n.get('failed', 0):,} failed / "
                                      f"{n.get('unknown', 0):,} unknown")
    for v in manifest.get("verifiers") or []:
        isolation = (v.get("sandbox") or {}).get("isolation")
        if isolation and isolation != "bubblewrap":
            t.add_row(f"[bold red]{v['name']} sandbox[/]", f"[bold red]{isolation} only: no bubblewrap[/]")
    cost = manifest.get("cost") or {}
    run = cost.get("run") or {}
    t.add_row("prompt tokens (version)", f"{cost.get('prompt_tokens', 0):,}")
    t.add_row("output tokens (version)", f"{cost.get('output_tokens', 0):,}")
    t.add_row("prompt tokens (this run)", f"{st.get('tokens_in', 0):,}")
    t.add_row("output tokens (this run)", f"{st.get('tokens_out', 0):,}")
    if run.get("engine_hours") is not None:
        t.add_row(f"engine-hours ({run.get('engines')} engine(s))", f"{run['engine_hours']:.4f}")
        if run.get("estimated_cost") is not None:
            t.add_row(f"estimated cost ({run.get('gpu_hour_price')}/{run.get('device') or 'device'}-hour)",
                      f"{run['estimated_cost']:,.4f}")
    t.add_row("output tokens/s", f"{st.get('tokens_per_s', 0):,.1f}")
    t.add_row("engine ready (s)", _secs(st.get("engine_ready_s")))
    t.add_row("first accepted trace (s)", _secs(st.get("first_accept_s"), none="- (none accepted)"))
    t.add_row("tail after the last completion (s)", _secs(st.get("tail_s")))
    t.add_row("wall time (s)", f"{st.get('wall_s', 0):.1f}")
    return t
