"""Committed Parquet parts of one run: STORE/NAME/.runs/<run_id>/parts/.

A part holds the rows of many shards (tens of MB, or what a time bound gathered): a run of a
million prompts writes tens of files, not one per shard. `parts/index.jsonl` names every committed
part, one line each, with the shard ranges it holds; resume reads that one small file, never a
listing of the folder (slow on a cluster's shared file system).

Write, then mark: a part is written to a temp file in the same directory, fsynced, renamed into
place, and only then named in the index (the line is appended and fsynced). The index line is the
commit. A crash leaves at most a temp file, or a renamed part that no index line names, or a torn
last line: every reader ignores all three, and `clean_temp()` removes them. Resume reads what is
committed on disk, never bookkeeping held in memory.

Rows in a part are sorted by (prompt_index, sample_index); each contiguous range of shards is one
row group, so a version build reads a run one row group at a time, in shard order (rows.py), and
its order check (each chunk after the last, no prompt in two chunks) holds as with one part per
shard.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from factory.store.layout import RUNS_DIR
from factory.store.schema import PART_SCHEMA

INDEX_NAME = "index.jsonl"
_PART_RE = re.compile(r"^part-(\d{8,})\.parquet$")
_TEMP_SUFFIX = ".tmp"
KEY_COLUMNS = ["prompt_id", "sample_index"]
_SORT = [("prompt_index", "ascending"), ("sample_index", "ascending")]


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


@dataclass(frozen=True, slots=True)
class PartGroup:
    """A contiguous range of shards inside a committed part: one row group (none if no rows)."""

    path: Path
    first_shard: int
    last_shard: int
    rows: int
    row_group: int | None


class RunDir:
    """One run's working directory. `path` is STORE/NAME/.runs/<run_id>."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.parts_dir = self.path / "parts"
        self.index_path = self.parts_dir / INDEX_NAME

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

    # ------------------------------------------------------------------ writing

    def writer(self, target_bytes: int = 64 << 20, max_age_s: float = 60.0) -> "PartWriter":
        """A writer that gathers committed shards into parts of about `target_bytes` (Arrow bytes in
        memory; zstd makes the file several times smaller), or what `max_age_s` gathered."""
        return PartWriter(self, target_bytes, max_age_s)

    def commit_part(self, shard_id: int, rows: list[dict[str, Any]]) -> Path:
        """Commit one shard's rows at once, as a part of its own.

        An empty `rows` still commits the shard (e.g. every prompt in it was filtered out), so
        resume does not redo it. A shard is committed once: committing it again is an error.
        """
        path = self.writer(target_bytes=0).add(shard_id, rows_to_table(rows))  # a size bound of 0: at once
        assert path is not None
        return path

    def _next_part_path(self) -> Path:
        taken = [int(m.group(1)) for g in self.groups() if (m := _PART_RE.match(g.path.name))]
        return self.parts_dir / f"part-{(max(taken) + 1) if taken else 1:08d}.parquet"

    def _write_part(self, shards: list[tuple[int, pa.Table]]) -> Path:
        """Write shards (sorted by id) as one part and commit it: rename, then the index line."""
        committed = self.committed_shards()
        again = sorted(sid for sid, _ in shards if sid in committed)
        if again:
            raise ValueError(f"shards {again[:5]} are committed already: a shard is committed once")
        ranges: list[list[Any]] = []  # [first, last, tables]
        for sid, t in shards:
            if ranges and ranges[-1][1] == sid - 1:
                ranges[-1][1] = sid
                ranges[-1][2].append(t)
            else:
                ranges.append([sid, sid, [t]])
        groups, tables, rg = [], [], 0
        for first, last, ts in ranges:
            t = pa.concat_tables(ts).sort_by(_SORT) if len(ts) > 1 else ts[0].sort_by(_SORT)
            entry: dict[str, Any] = {"shards": [first, last], "rows": t.num_rows, "row_group": None}
            if t.num_rows:
                entry["row_group"] = rg
                rg += 1
                tables.append(t)
            groups.append(entry)
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        final = self._next_part_path()
        # Leading dot + .tmp suffix: never matches the part pattern, so readers skip it.
        tmp = self.parts_dir / f".{final.stem}.{uuid.uuid4().hex[:12]}{_TEMP_SUFFIX}"
        try:
            write_parquet_durably(iter(tables), tmp, schema=PART_SCHEMA, compression="zstd")
            size = tmp.stat().st_size
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.parts_dir)
        line = {"part": final.name, "groups": groups, "rows": sum(g["rows"] for g in groups), "bytes": size,
                "at": round(time.time(), 3)}
        with open(self.index_path, "a") as f:  # the commit
            f.write(json.dumps(line, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(self.parts_dir)
        return final

    # ------------------------------------------------------------------ reading

    def _index_lines(self) -> tuple[list[dict[str, Any]], bool]:
        """The committed index lines, and whether a torn or uncommitted tail follows them."""
        try:
            text = self.index_path.read_text()
        except FileNotFoundError:
            return [], False
        lines, torn = [], False
        for raw in text.split("\n")[:-1]:  # a last piece without its newline was never committed
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                torn = True
                break
        return lines, torn or not text.endswith("\n") and bool(text)

    def groups(self) -> list[PartGroup]:
        """Every committed shard range, in shard order."""
        out = []
        for line in self._index_lines()[0]:
            path = self.parts_dir / line["part"]
            for g in line["groups"]:
                out.append(PartGroup(path, g["shards"][0], g["shards"][1], g["rows"], g["row_group"]))
        return sorted(out, key=lambda g: g.first_shard)

    def parts(self) -> list[dict[str, Any]]:
        """The index lines: one per committed part (file name, rows, bytes, shard ranges)."""
        return self._index_lines()[0]

    def committed_shards(self) -> set[int]:
        done: set[int] = set()
        for g in self.groups():
            done.update(range(g.first_shard, g.last_shard + 1))
        return done

    def committed_keys(self) -> set[tuple[str, int]]:
        """(prompt_id, sample_index) of every committed row; reads only those two columns."""
        keys: set[tuple[str, int]] = set()
        for p in self.part_files():
            t = pq.read_table(p, columns=KEY_COLUMNS)
            keys.update(zip(t["prompt_id"].to_pylist(), t["sample_index"].to_pylist()))
        return keys

    def part_files(self) -> list[Path]:
        """The committed part files, in commit order."""
        return [self.parts_dir / line["part"] for line in self._index_lines()[0]]

    def read_table(self) -> pa.Table:
        """Every committed row, in shard order, in PART_SCHEMA. All at once: a version build
        reads `groups()` one at a time instead."""
        tables = []
        for g in self.groups():
            if g.row_group is not None:
                with pq.ParquetFile(g.path) as f:
                    tables.append(f.read_row_group(g.row_group).cast(PART_SCHEMA))
        if not tables:
            return PART_SCHEMA.empty_table()
        return pa.concat_tables(tables)

    def temp_files(self) -> list[Path]:
        """Leftovers of interrupted commits: temp files, and renamed parts no index line names."""
        if not self.parts_dir.is_dir():
            return []
        named = {line["part"] for line in self._index_lines()[0]}
        return sorted(p for p in self.parts_dir.iterdir()
                      if p.name.endswith(_TEMP_SUFFIX) or (_PART_RE.match(p.name) and p.name not in named))

    def clean_temp(self) -> int:
        """Remove leftovers of interrupted commits (and a torn index line); returns how many files.
        Call under the dataset lock (a concurrent writer's in-flight commit would be removed)."""
        n = 0
        for p in self.temp_files():
            p.unlink(missing_ok=True)
            n += 1
        lines, torn = self._index_lines()
        if torn:  # rewrite without the torn tail, so the next line appended starts on its own
            tmp = self.index_path.with_name(f".{INDEX_NAME}.{uuid.uuid4().hex[:12]}{_TEMP_SUFFIX}")
            with open(tmp, "w") as f:
                f.writelines(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.index_path)
            fsync_dir(self.parts_dir)
        return n


class PartWriter:
    """Gathers committed shards and writes them as parts of about `target_bytes`, or once the oldest
    waited `max_age_s`. Shards are committed when their part is (`add` and `flush` return it); a
    crash loses the shards still gathered, which resume then redoes."""

    def __init__(self, run: RunDir, target_bytes: int, max_age_s: float):
        self.run, self.target_bytes, self.max_age_s = run, target_bytes, max_age_s
        self._shards: list[tuple[int, pa.Table]] = []
        self._bytes = 0
        self._since: float | None = None
        self.parts_written = 0
        self.bytes_written = 0

    @property
    def pending_shards(self) -> int:
        return len(self._shards)

    def add(self, shard_id: int, rows: pa.Table | list[dict[str, Any]]) -> Path | None:
        if shard_id < 0:
            raise ValueError(f"shard_id must be >= 0, got {shard_id}")
        table = rows if isinstance(rows, pa.Table) else rows_to_table(rows)
        _check_unique(shard_id, table)
        self._shards.append((shard_id, table))
        self._bytes += table.nbytes
        if self._since is None:
            self._since = time.monotonic()
        return self.tick()

    def tick(self) -> Path | None:
        """Write a part if the gathered shards are big enough or have waited long enough."""
        if self._shards and (self._bytes >= self.target_bytes or time.monotonic() - self._since >= self.max_age_s):
            return self.flush()
        return None

    def flush(self) -> Path | None:
        if not self._shards:
            return None
        shards = sorted(self._shards, key=lambda s: s[0])
        path = self.run._write_part(shards)
        self._shards, self._bytes, self._since = [], 0, None
        self.parts_written += 1
        self.bytes_written += path.stat().st_size
        return path


def _check_unique(shard_id: int, table: pa.Table) -> None:
    keys = list(zip(table["prompt_id"].to_pylist(), table["sample_index"].to_pylist()))
    if len(set(keys)) != len(keys):
        dupes = sorted(k for k, n in Counter(keys).items() if n > 1)[:5]
        raise ValueError(f"shard {shard_id} holds the same (prompt_id, sample_index) twice: {dupes}")
