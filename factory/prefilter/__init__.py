"""Prompt prefilters: dedup and benchmark decontamination, before any GPU time is spent.

    kept, counts, removed = apply_prefilters(prompts, cfg.prefilter)

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
from factory.prefilter.decontaminate import HubLoader, contaminated, load_from_hub
from factory.prefilter.dedup import exact_duplicates, near_duplicates
from factory.types import Prompt

__all__ = [
    "DecontaminateConfig",
    "DedupConfig",
    "PrefilterConfig",
    "apply_prefilters",
]

T = TypeVar("T")
PROGRESS_MIN_PROMPTS = 10_000  # below this the stages finish before a bar is worth drawing


def _rich_progress(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    from rich.progress import track

    yield from track(items, total=total, description=description, transient=True)


def _no_progress(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    return iter(items)


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
    texts = [p.problem for p in prompts]
    reasons: dict[int, str] = {}

    if cfg.dedup.exact:
        for i in exact_duplicates(texts):
            reasons[i] = "duplicate_exact"
    if cfg.decontaminate.enabled:
        hits = contaminated(texts, cfg.decontaminate, skip=set(reasons), progress=track,
                            hub_loader=hub_loader)
        for i, name in hits.items():
            reasons[i] = f"contaminated:{name}"
    if cfg.dedup.near:
        for i in near_duplicates(texts, cfg.dedup, skip=set(reasons), progress=track):
            reasons[i] = "duplicate_near"

    kept = [p for i, p in enumerate(prompts) if i not in reasons]
    removed = [(prompts[i], reasons[i]) for i in sorted(reasons)]
    counts = dict(Counter(r for _, r in removed))
    return kept, counts, removed
