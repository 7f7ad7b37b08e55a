"""Committed Parquet parts of one run: STORE/NAME/.runs/<run_id>/parts/shard-XXXXXXXX.parquet.

Write, then mark: a part is written to a temp file in the same directory, fsynced, then renamed
into place. The rename is the commit; a crash leaves at most a temp file, which every reader
ignores (it never matches `shard-*.parquet`) and `clean_temp()` removes. Resume reads what is
committed on disk, never bookkeeping held in memory.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from factory.store.schema import PART_SCHEMA

RUNS_DIR = ".runs"
_PART_RE = re.compile(r"^shard-(\d{8,})\.parquet$")
_TEMP_SUFFIX = ".tmp"
KEY_COLUMNS = ["prompt_id", "sample_index"]


def fsync_dir(path: Path) -> None:
    """Make a rename or new entry in `path` durable (the entry lives in the directory)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet_durably(data: pa.Table | Iterable[pa.Table], path: Path, schema: pa.Schema | None = None,
                          **kwargs: Any) -> None:
    """Write a Parquet file and fsync it before returning (the caller renames it afterwards).

    `data` is a table, or the file's row groups one table each, in `schema`: each group is written
    as it comes, so a file can be larger than what is held in memory at once.
    """
    with open(path, "wb") as f:
        if not isinstance(data, pa.Table):
            _write_row_groups(data, f, schema, **kwargs)
        elif data.num_rows:
            pq.write_table(data, f, **kwargs)
        else:
            _write_row_groups([], f, data.schema, **kwargs)
        f.flush()
        os.fsync(f.fileno())


def _write_row_groups(groups: Iterable[pa.Table], f: BinaryIO, schema: pa.Schema | None, **kwargs: Any) -> None:
    """One row group per table; none at all for no rows (write_table would emit one 0-row group,
    which readers that size batches from the first row group, like datasets' parquet builder,
    reject)."""
    kwargs.pop("row_group_size", None)
    with pq.ParquetWriter(f, schema, **kwargs) as writer:
        for group in groups:
            writer.write_table(group, row_group_size=group.num_rows)
            del group  # else it stays alive while `groups` builds the next one: two groups held


def rows_to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Rows (dicts from `trace_row`) -> a PART_SCHEMA table; wrong keys are an error, not nulls."""
    rows = list(rows)
    names = set(PART_SCHEMA.names)
    for i, row in enumerate(rows):
        keys = set(row)
        if keys != names:
            missing, extra = sorted(names - keys), sorted(keys - names)
            raise ValueError(
                f"row {i} does not match the part schema (missing {missing}, unexpected {extra}); "
                "build rows with factory.store.schema.trace_row()"
            )
    return pa.Table.from_pylist(rows, schema=PART_SCHEMA)


class RunDir:
    """One run's working directory. `path` is STORE/NAME/.runs/<run_id>."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.parts_dir = self.path / "parts"

    @classmethod
    def of(cls, dataset_dir: str | Path, run_id: str) -> "RunDir":
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise ValueError(f"run id {run_id!r} must be a plain folder name")
        return cls(Path(dataset_dir) / RUNS_DIR / run_id)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def create(self) -> "RunDir":
        """Make the run dir (the runner writes its run.json there) and its parts dir."""
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        return self

    def remove(self) -> None:
        """Delete the run dir, e.g. once its rows are in a published version."""
        shutil.rmtree(self.path, ignore_errors=True)

    def part_path(self, shard_id: int) -> Path:
        return self.parts_dir / f"shard-{shard_id:08d}.parquet"

    def commit_part(self, shard_id: int, rows: list[dict[str, Any]]) -> Path:
        """Write one shard's rows atomically; committing a shard again replaces it (no duplicates).

        An empty `rows` still commits the shard (e.g. every prompt in it was filtered out), so
        resume does not redo it.
        """
        if shard_id < 0:
            raise ValueError(f"shard_id must be >= 0, got {shard_id}")
        table = rows_to_table(rows)
        keys = list(zip(table["prompt_id"].to_pylist(), table["sample_index"].to_pylist()))
        if len(set(keys)) != len(keys):
            dupes = sorted(k for k, n in Counter(keys).items() if n > 1)[:5]
            raise ValueError(f"shard {shard_id} holds the same (prompt_id, sample_index) twice: {dupes}")
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        final = self.part_path(shard_id)
        # Leading dot + .tmp suffix: never matches the part pattern, so readers skip it.
        tmp = self.parts_dir / f".{final.stem}.{uuid.uuid4().hex[:12]}{_TEMP_SUFFIX}"
        try:
            write_parquet_durably(table, tmp, compression="zstd")
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.parts_dir)
        return final

    def _parts(self) -> list[tuple[int, Path]]:
        if not self.parts_dir.is_dir():
            return []
        found = []
        for p in self.parts_dir.iterdir():
            m = _PART_RE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    def committed_shards(self) -> set[int]:
        return {sid for sid, _ in self._parts()}

    def committed_keys(self) -> set[tuple[str, int]]:
        """(prompt_id, sample_index) of every committed row; reads only those two columns."""
        keys: set[tuple[str, int]] = set()
        for _, p in self._parts():
            t = pq.read_table(p, columns=KEY_COLUMNS)
            keys.update(zip(t["prompt_id"].to_pylist(), t["sample_index"].to_pylist()))
        return keys

    def part_files(self) -> list[Path]:
        """The committed part files, in shard order."""
        return [p for _, p in self._parts()]

    def read_table(self) -> pa.Table:
        """Every committed row, parts in shard order, in PART_SCHEMA. All at once: a version build
        reads `part_files()` one at a time instead."""
        tables = [pq.read_table(p, schema=PART_SCHEMA) for p in self.part_files()]
        if not tables:
            return PART_SCHEMA.empty_table()
        return pa.concat_tables(tables)

    def temp_files(self) -> list[Path]:
        if not self.parts_dir.is_dir():
            return []
        return sorted(p for p in self.parts_dir.iterdir() if p.name.endswith(_TEMP_SUFFIX))

    def clean_temp(self) -> int:
        """Remove leftovers of interrupted commits; returns how many. Call under the dataset lock
        (a concurrent writer's in-flight temp file would otherwise be removed)."""
        n = 0
        for p in self.temp_files():
            p.unlink(missing_ok=True)
            n += 1
        return n
