"""Config of the prompt prefilters (dedup, decontamination), run before any generation.

Kept free of imports from factory.config so that factory.config can import it without a cycle.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from factory.common.section import Section as _Section

BenchmarkName = Literal["math500", "aime24", "aime25", "gpqa_diamond", "livecodebench"]
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class DedupConfig(_Section):
    exact: bool = True  # same text after lowercasing, collapsing whitespace, edge punctuation
    near: bool = True  # MinHash LSH on token shingles, confirmed by the exact Jaccard
    threshold: float = Field(default=0.85, gt=0, le=1)  # Jaccard of the shingle sets
    num_perm: int = Field(default=128, ge=16, le=1024)
    shingle: int = Field(default=3, ge=1, le=16)  # tokens per shingle; problems are short
    # Numbers carry a problem's meaning: "2+3" and "2+4" are two problems, however alike the
    # text. With this on, prompts whose multisets of numbers differ are never near duplicates.
    numbers_must_match: bool = True
    seed: int = 1  # MinHash permutations; fixed so every run removes the same prompts


class DecontaminateConfig(_Section):
    enabled: bool = False  # on by choice: it needs the benchmarks (Hub or local files)
    ngram: int = Field(default=8, ge=1)  # words; Open-R1's choice
    benchmarks: list[BenchmarkName] = Field(default_factory=lambda: ["math500", "aime24", "aime25"])
    # name -> local JSONL / JSON / Parquet path. A known name here wins over the Hub; any other
    # name adds a benchmark of your own.
    files: dict[str, str] = Field(default_factory=dict)
    column: str = "problem"  # the problem column of the local files
    columns: dict[str, str] = Field(default_factory=dict)  # per-benchmark override of `column`
    hub: bool = True  # load benchmarks without a local file from the Hub when reachable

    @model_validator(mode="after")
    def _check(self) -> "DecontaminateConfig":
        for name in self.files:
            if not _PLAIN_NAME.match(name):
                raise ValueError(f"decontaminate.files: {name!r} is not a plain name (letters, digits, _ . -)")
        known = set(self.benchmarks) | set(self.files)
        unknown = sorted(set(self.columns) - known)
        if unknown:
            raise ValueError(
                f"decontaminate.columns names {unknown}, which are neither in benchmarks nor in files"
            )
        if self.enabled and not known:
            raise ValueError("decontaminate is enabled but lists no benchmarks and no files")
        return self

    def names(self) -> list[str]:
        """Every benchmark checked, in config order: `benchmarks`, then extra names in `files`."""
        out = list(dict.fromkeys(self.benchmarks))
        out += [n for n in self.files if n not in out]
        return out


class PrefilterConfig(_Section):
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    decontaminate: DecontaminateConfig = Field(default_factory=DecontaminateConfig)
