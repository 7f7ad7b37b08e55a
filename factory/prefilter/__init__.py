"""Prompt prefilters: dedup and benchmark decontamination, before any GPU time is spent.

    kept, counts, removed = apply_prefilters(prompts, cfg.prefilter)   # a list at once
    stages = Prefilter(cfg.prefilter); stages.reason(prompt.problem)     # or one at a time

Stages run cheapest first, each on what the previous kept: exact dedup, decontamination, near
dedup. A prompt removed by one stage is counted under that stage's reason only:
"duplicate_exact", "contaminated:<benchmark>", "duplicate_near".

Light on import: datasketch (scipy), datasets and rich load only when a stage needs them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TypeVar

from factory.prefilter.config import DecontaminateConfig, DedupConfig, PrefilterConfig
from factory.prefilter.decontaminate import HubLoader, NgramIndex, load_benchmarks, load_from_hub
from factory.prefilter.dedup import ExactIndex, NearIndex
from factory.types import Prompt

__all__ = [
    "DecontaminateConfig",
    "DedupConfig",
    "PrefilterConfig",
    "Prefilter",
    "apply_prefilters",
]

T = TypeVar("T")
PROGRESS_MIN_PROMPTS = 10_000  # below this the stages finish before a bar is worth drawing


def _rich_progress(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    from rich.progress import track

    yield from track(items, total=total, description=description, transient=True)


def _no_progress(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    return iter(items)


class Prefilter:
    """The prefilters one prompt at a time, in input order: a run streams its prompts through it.

    Its state grows with the prompts seen: exact dedup keeps an 8-byte digest a prompt, near dedup
    the shingle hashes of each kept prompt (dedup.NearIndex); decontamination keeps only the
    benchmarks' n-grams. Raises decontaminate.BenchmarkUnavailable when built, if a requested
    benchmark cannot be loaded (the message says how to give a local file).
    """

    def __init__(self, cfg: PrefilterConfig, hub_loader: HubLoader = load_from_hub):
        self.exact = ExactIndex() if cfg.dedup.exact else None
        dc = cfg.decontaminate
        self.benchmarks = NgramIndex(load_benchmarks(dc, hub_loader), dc.ngram) if dc.enabled else None
        self.near = NearIndex(cfg.dedup) if cfg.dedup.near else None
        self.counts: Counter = Counter()  # reason -> prompts removed
        self._seen = 0

    def restart(self) -> None:
        """Forget every prompt seen (a new pass over the same input); the benchmarks stay loaded."""
        if self.exact is not None:
            self.exact = ExactIndex()
        if self.near is not None:
            self.near = NearIndex(self.near.cfg)
        self.counts, self._seen = Counter(), 0

    def reason(self, text: str) -> str | None:
        """Why this problem is removed (the first stage that removes it), or None: it is kept."""
        ordinal = self._seen
        self._seen += 1
        if self.exact is not None and self.exact.seen(text):
            reason = "duplicate_exact"
        elif self.benchmarks is not None and (name := self.benchmarks.match(text)) is not None:
            reason = f"contaminated:{name}"
        elif self.near is not None and self.near.add(ordinal, text) is not None:
            reason = "duplicate_near"
        else:
            return None
        self.counts[reason] += 1
        return reason


def apply_prefilters(
    prompts: list[Prompt],
    cfg: PrefilterConfig,
    progress: bool | None = None,
    hub_loader: HubLoader = load_from_hub,
) -> tuple[list[Prompt], dict[str, int], list[tuple[Prompt, str]]]:
    """Drop duplicate and contaminated prompts; keep the order of the rest.

    Returns (kept prompts, {reason: count}, [(removed prompt, reason)] in input order).
    `progress`: None shows a bar only above 10k prompts. Raises decontaminate.BenchmarkUnavailable
    when a requested benchmark cannot be loaded (the message says how to give a local file).
    """
    show = len(prompts) > PROGRESS_MIN_PROMPTS if progress is None else progress
    track = _rich_progress if show else _no_progress
    stages = Prefilter(cfg, hub_loader)
    kept: list[Prompt] = []
    removed: list[tuple[Prompt, str]] = []
    for p in track(prompts, len(prompts), "prefilter"):
        reason = stages.reason(p.problem)
        if reason is None:
            kept.append(p)
        else:
            removed.append((p, reason))
    return kept, dict(stages.counts), removed
