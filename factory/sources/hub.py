"""A Hub dataset through `datasets.load_dataset` (needs network, or a warm HF cache).

`datasets` keeps the rows as Arrow files on disk, memory-mapped; they are turned into Python rows
a chunk at a time (`hub_rows`), so the driver never holds the split as Python objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from factory.config import ConfigError, SourceConfig
from factory.sources.files import CHUNK_ROWS


def open_hub(src: SourceConfig) -> tuple[Any, str | None]:
    """(the split as a `datasets.Dataset`, the dataset commit read; offline, the revision asked for,
    which may be a branch or None)."""
    import datasets

    try:
        ds = datasets.load_dataset(src.dataset, src.subset, split=src.split, revision=src.revision)
    except Exception as e:  # offline, missing repo, wrong split: say which and how to fix
        raise ConfigError(
            f"could not load Hub dataset {src.dataset!r} (subset={src.subset}, split={src.split}, "
            f"revision={src.revision}): {type(e).__name__}: {e}. Check the id and split, your network, "
            "or download it and point source.path at a local .jsonl/.parquet file."
        ) from None
    revision = src.revision
    try:  # record the commit actually read, so the card can pin it and a resume can compare it
        from huggingface_hub import HfApi

        revision = HfApi().dataset_info(src.dataset, revision=src.revision).sha or revision
    except Exception:
        pass
    if src.limit is not None and src.shuffle_seed is None:
        ds = ds.select(range(min(len(ds), src.limit * 2)))  # headroom for rejected rows
    return ds, revision


def hub_rows(ds: Any, chunk_rows: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row) of the split, `chunk_rows` rows turned into Python at a time."""
    chunk_rows = chunk_rows or CHUNK_ROWS
    for start in range(0, len(ds), chunk_rows):
        chunk = ds.select(range(start, min(len(ds), start + chunk_rows))).to_list()
        for k, row in enumerate(chunk, start + 1):
            yield k, row

