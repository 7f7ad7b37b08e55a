"""The prompts a run generates for, streamed: source -> prefilter -> not yet published.

    feed = PromptFeed(cfg, stream)          # stream: a scanned sources.PromptStream
    total = feed.count(run_path / "prefiltered.jsonl")  # one pass: totals, every removed prompt
    for prompt in feed: ...                 # read again, lazily, as shards are cut

Every pass reads the source afresh and runs the prefilters from a clean state, so each pass gives
the same prompts with the same `index`. Prompts kept by the prefilters are numbered in order (the
output is sorted by that number); an incremental run then drops those its parent version already
published, without renumbering, as before streaming.

Per prompt of the input, the driver holds: the prefilters' state (prefilter.Prefilter) and, for
an incremental run, the parent's published prompt ids (a set of strings, ~90 bytes an id).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from factory.config import Config
from factory.prefilter import Prefilter
from factory.sources import PromptStream
from factory.types import Prompt


class PromptFeed:
    def __init__(self, cfg: Config, stream: PromptStream):
        self.stream = stream
        # Built now, before any run folder exists: a benchmark that cannot be loaded stops here.
        self.prefilter = Prefilter(cfg.prefilter) if cfg.prefilter is not None else None
        self.published: set[str] | frozenset[str] = frozenset()  # an incremental run's parent's prompt ids
        self.prefiltered: dict[str, int] = {}  # reason -> prompts, from the last full pass

    def _prompts(self, removed: Path | None = None) -> Iterator[Prompt]:
        stages = self.prefilter
        if stages is not None:
            stages.restart()
        out = None
        if removed is not None:
            tmp = removed.with_name(removed.name + ".tmp")
            out = tmp.open("w")
        try:
            kept = 0
            for p in self.stream:
                if stages is not None:
                    reason = stages.reason(p.problem)
                    if reason is not None:
                        if out is not None:
                            out.write(json.dumps({"prompt_id": p.prompt_id, "reason": reason, "problem": p.problem})
                                      + "\n")
                        continue
                    p.index = kept  # positions in the generated set: outputs are sorted by them
                    kept += 1
                if p.prompt_id in self.published:
                    continue
                yield p
            if stages is not None:
                self.prefiltered = dict(stages.counts)
        finally:
            if out is not None and removed is not None:
                out.close()
                if stages is not None and stages.counts:  # every prefiltered prompt, with its reason
                    os.replace(tmp, removed)
                else:
                    tmp.unlink()

    def count(self, removed: Path | None = None) -> int:
        """The prompts to generate for; every prefiltered prompt is written to `removed` (JSONL)."""
        if self.prefilter is None and not self.published and self.stream.summary is not None:
            return int(self.stream.summary.info["prompts"])  # nothing filters: the scan counted them
        return sum(1 for _ in self._prompts(removed))

    def __iter__(self) -> Iterator[Prompt]:
        return self._prompts()
