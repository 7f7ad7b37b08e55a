"""Benchmark decontamination: drop prompts that share a word n-gram with a benchmark problem.

Texts are normalised the same way on both sides (NFKC, lowercase, split on anything that is not
a letter or digit, so "$2x+3$" and "2x + 3" both read `2x 3`), then every `ngram`-word window of
a prompt is looked up in the set of windows of the benchmark problems (8 words: Open-R1's choice).
A benchmark problem shorter than `ngram` words (but at least 4) is indexed whole, so a prompt
that contains all of it is caught too; any prompt equal to a benchmark problem is caught. A
prompt shorter than `ngram` words is otherwise not flagged: a fragment of a long problem is no
evidence of contamination.

Benchmarks come from a local file named in the config (JSONL / JSON / Parquet) or, when none is
given, from the Hub with `datasets.load_dataset`. A benchmark that can be loaded from neither is
an error that says how to give a local file: a contamination check is never skipped silently.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from factory.errors import UserError
from factory.prefilter.config import DecontaminateConfig

T = TypeVar("T")
ProgressFn = Callable[[Iterable[T], int, str], Iterator[T]]
_WORD = re.compile(r"[^\W_]+")


class BenchmarkUnavailable(UserError, RuntimeError):
    """A requested benchmark could not be loaded; the message says how to give a local file."""


@dataclass(frozen=True, slots=True)
class HubBenchmark:
    repo: str
    subset: str | None
    split: str
    column: str
    note: str = ""


HUB_BENCHMARKS: dict[str, HubBenchmark] = {
    "math500": HubBenchmark("HuggingFaceH4/MATH-500", None, "test", "problem"),
    "aime24": HubBenchmark("HuggingFaceH4/aime_2024", None, "train", "problem"),
    "aime25": HubBenchmark("yentinglin/aime_2025", None, "train", "problem"),
    "gpqa_diamond": HubBenchmark(
        "Idavidrein/gpqa", "gpqa_diamond", "train", "Question",
        note="gated: accept its terms on the Hub and log in (HF_TOKEN) first",
    ),
    "livecodebench": HubBenchmark(
        "livecodebench/code_generation_lite", None, "test", "question_content",
        note="several GB, mostly hidden tests: a local file with only the questions is far lighter",
    ),
}


def words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


def _no_progress(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    return iter(items)


# --------------------------------------------------------------------------------------------
# loading


def read_problems(path: str | Path, column: str) -> list[str]:
    """The `column` of a local .jsonl / .json / .parquet file, as strings (empty rows dropped)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"benchmark file {p} not found")
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(p).names
        if column not in names:
            raise KeyError(_missing_column(p, column, names))
        values = pq.read_table(p, columns=[column]).column(column).to_pylist()
    elif suffix in (".jsonl", ".json"):
        rows = _read_json_rows(p)
        names = sorted({k for r in rows for k in r})
        if rows and column not in names:
            raise KeyError(_missing_column(p, column, names))
        values = [r.get(column) for r in rows]
    else:
        raise ValueError(f"benchmark file {p}: unsupported format {suffix!r} (use .jsonl, .json or .parquet)")
    return [str(v) for v in values if v is not None and str(v).strip()]


def _read_json_rows(p: Path) -> list[dict[str, Any]]:
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]  # {"data": [...]} as some exports write
    if isinstance(data, dict):  # column-oriented: {"problem": [...], ...}
        cols = {k: v for k, v in data.items() if isinstance(v, list)}
        n = max((len(v) for v in cols.values()), default=0)
        return [{k: v[i] for k, v in cols.items() if i < len(v)} for i in range(n)]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError(f"benchmark file {p}: expected a list of objects or a dict of columns")
    return data


def _missing_column(p: Path, column: str, names: Sequence[str]) -> str:
    return (
        f"benchmark file {p} has no column {column!r}; its columns are: {', '.join(names)}. "
        "Set prefilter.decontaminate.column (or columns.<name>) to the problem column."
    )


def _hub_offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def load_from_hub(name: str, spec: HubBenchmark) -> list[str]:
    """The benchmark's problems from the Hub (or the local `datasets` cache when offline)."""
    from datasets import load_dataset

    ds = load_dataset(spec.repo, spec.subset, split=spec.split)
    if spec.column not in ds.column_names:
        raise KeyError(f"{spec.repo} has no column {spec.column!r}; columns: {ds.column_names}")
    return [str(v) for v in ds[spec.column] if v is not None and str(v).strip()]


def _unavailable(name: str, cfg: DecontaminateConfig, cause: str) -> BenchmarkUnavailable:
    spec = HUB_BENCHMARKS.get(name)
    lines = [
        f"benchmark {name!r} for decontamination is not available: {cause}.",
        f"Give a local copy: prefilter.decontaminate.files.{name}: /path/to/{name}.jsonl "
        f"(JSONL, JSON or Parquet with a {cfg.columns.get(name, cfg.column)!r} column; "
        f"prefilter.decontaminate.columns.{name} names another column).",
    ]
    if spec is not None:
        subset = f", {spec.subset!r}" if spec.subset else ""
        lines.append(
            "Export it once where the Hub is reachable: python -c \"from datasets import load_dataset; "
            f"load_dataset({spec.repo!r}{subset}, split={spec.split!r})"
            f".select_columns([{spec.column!r}]).to_json('{name}.jsonl')\""
            f" and set columns.{name}: {spec.column}"
            + (f" ({spec.note})" if spec.note else "")
        )
    lines.append(f"Or drop {name!r} from prefilter.decontaminate.benchmarks.")
    return BenchmarkUnavailable("\n".join(lines))


HubLoader = Callable[[str, HubBenchmark], list[str]]


def load_benchmarks(cfg: DecontaminateConfig, hub_loader: HubLoader = load_from_hub) -> dict[str, list[str]]:
    """{benchmark name: problems}, in config order. Local files win; then the Hub if allowed."""
    out: dict[str, list[str]] = {}
    for name in cfg.names():
        if name in cfg.files:
            column = cfg.columns.get(name, cfg.column)
            try:
                out[name] = read_problems(cfg.files[name], column)
            except (OSError, KeyError, ValueError) as e:
                msg = e.args[0] if isinstance(e, KeyError) else str(e)
                raise BenchmarkUnavailable(f"prefilter.decontaminate.files.{name}: {msg}") from None
            continue
        spec = HUB_BENCHMARKS.get(name)
        if spec is None:  # cannot happen through the config (names() only adds files' keys)
            raise _unavailable(name, cfg, "it is not a known benchmark and has no local file")
        if not cfg.hub:
            raise _unavailable(name, cfg, "no local file is given and prefilter.decontaminate.hub is off")
        try:
            out[name] = hub_loader(name, spec)
        except Exception as e:  # any failure to load is the same to the user: give a file
            where = " (HF_HUB_OFFLINE is set and it is not in the local cache)" if _hub_offline() else ""
            raise _unavailable(
                name, cfg, f"loading {spec.repo} from the Hub failed{where}: {type(e).__name__}: {e}"
            ) from e
        if not out[name]:
            raise _unavailable(name, cfg, f"{spec.repo} gave no problems")
    return out


# --------------------------------------------------------------------------------------------
# matching


# A benchmark problem this short is matched by equality only, never by containment.
_MIN_CONTAINED = 4


class NgramIndex:
    """Word n-grams of benchmark problems -> the first benchmark (config order) that has them."""

    def __init__(self, benchmarks: dict[str, list[str]], n: int):
        self.n = n
        # A prompt equal (after normalisation) to a benchmark problem, whatever its length.
        self.whole: dict[tuple[str, ...], str] = {}
        # length -> {gram: benchmark}; length n for long problems, shorter ones indexed whole
        self.grams: dict[int, dict[tuple[str, ...], str]] = {}
        for name, problems in benchmarks.items():
            for problem in problems:
                w = words(problem)
                if not w:
                    continue
                self.whole.setdefault(tuple(w), name)
                if len(w) < min(n, _MIN_CONTAINED):
                    continue  # "compute 5": containment would flag any prompt with those words
                k = min(len(w), n)
                table = self.grams.setdefault(k, {})
                for g in zip(*(w[i:] for i in range(k))):
                    table.setdefault(g, name)

    def match(self, text: str) -> str | None:
        """The benchmark that `text` shares an n-gram with, or None."""
        w = words(text)
        if not w:
            return None
        name = self.whole.get(tuple(w))
        if name is not None:
            return name
        for k in sorted(self.grams, reverse=True):  # long grams first: the usual hit
            if len(w) < k:
                continue
            table = self.grams[k]
            for g in zip(*(w[i:] for i in range(k))):
                name = table.get(g)
                if name is not None:
                    return name
        return None


def contaminated(
    texts: Sequence[str],
    cfg: DecontaminateConfig,
    skip: set[int] | frozenset[int] = frozenset(),
    progress: ProgressFn = _no_progress,
    hub_loader: HubLoader = load_from_hub,
) -> dict[int, str]:
    """{index of a contaminated text: benchmark name}. Indices in `skip` are not checked."""
    index = NgramIndex(load_benchmarks(cfg, hub_loader), cfg.ngram)
    hits: dict[int, str] = {}
    for i in progress(range(len(texts)), len(texts), "decontamination"):
        if i in skip:
            continue
        name = index.match(texts[i])
        if name is not None:
            hits[i] = name
    return hits
