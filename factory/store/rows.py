"""The rows of a version build, one bounded chunk at a time.

A version can hold millions of traces: more than a driver should hold at once. So the builder
reads rows as chunks (one committed part of a run, one row group of the parent version, or a
table the caller holds already), each loaded when it is reached and dropped after. `scan_rows`
makes the one pass that needs every row: per-prompt counts (for `pass_rate`), the manifest's
statistics, and the row and byte totals that fix the file layout (the row-group size comes from
the average row's size in memory, so the scan reads every column). The writers then read the
chunks again, each chunk with its `pass_rate` added (`VersionRows.tables`).

What stays in memory: one chunk and a row group; per prompt its counts (accepted, samples) in a
small Arrow table per chunk (a prompt id and two ints: ~30-80 bytes a prompt); in incremental mode,
per parent prompt a dict entry of its counts and a bitmask of its published sample indexes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from factory.store.manifest import RowStats, VersionError, accepted_mask, load_manifest, per_prompt
from factory.store.parts import RunDir
from factory.store.schema import ALL_SCHEMA, DEFAULT_SCHEMA, PART_SCHEMA

log = logging.getLogger(__name__)

Chunk = Callable[[], pa.Table]  # loads one bounded piece of `all` rows
SORT_KEYS = [("prompt_index", "ascending"), ("sample_index", "ascending")]
PASS_RATE_BYTES = 8  # float64 a row: not in the chunks yet when the scan sizes the row groups
_DEFAULT_PART_COLUMNS = [n for n in DEFAULT_SCHEMA.names if n != "pass_rate"]


# ----------------------------------------------------------------------------- sources


def as_part_table(table: pa.Table) -> pa.Table:
    """Accept PART_SCHEMA or ALL_SCHEMA columns (pass_rate is dropped: it is recomputed)."""
    missing = [n for n in PART_SCHEMA.names if n not in table.column_names]
    if missing:
        raise VersionError(f"table lacks columns {missing}; expected the part schema {PART_SCHEMA.names}")
    return table.select(PART_SCHEMA.names).cast(PART_SCHEMA)


def table_chunks(table: pa.Table) -> list[Chunk]:
    return [lambda: table]


def run_chunks(run: RunDir) -> list[Chunk]:
    """One chunk per contiguous shard range of a committed part (one row group), in shard order."""
    return [partial(_read_part_group, g.path, g.row_group) for g in run.groups() if g.row_group is not None]


def _read_part_group(path: Path, index: int) -> pa.Table:
    # ParquetFile, not pq.read_table: read_table goes through pyarrow.dataset, whose first use
    # costs the driver ~65 MB of RSS (measured here). One thread: reader threads keep allocator
    # arenas of their own (8-16 MB more RSS over 313 parts, measured).
    with pq.ParquetFile(path) as f:
        return as_part_table(f.read_row_group(index, use_threads=False))


def version_chunks(version_dir: Path) -> list[Chunk]:
    """One chunk per row group of a version's `all` files, in manifest order (a file can hold
    200,000 rows; a row group is about 32 MiB)."""
    chunks: list[Chunk] = []
    for entry in load_manifest(version_dir)["files"]:
        if entry["config"] == "all":
            path = version_dir / entry["path"]
            groups = pq.ParquetFile(path).metadata.num_row_groups
            chunks += [partial(_read_row_group, path, i) for i in range(groups)]
    return chunks


def _read_row_group(path: Path, index: int) -> pa.Table:
    with pq.ParquetFile(path) as f:
        return as_part_table(f.read_row_group(index))


def _dedupe(table: pa.Table) -> pa.Table:
    """Keep the first row of each (prompt_id, sample_index) (parts never repeat a key; this guards
    odd callers)."""
    if table.num_rows == 0:
        return table
    keys = pc.binary_join_element_wise(  # \x1f never occurs in a hash or an id
        table["prompt_id"], pc.cast(table["sample_index"], pa.string()), "\x1f")
    keyed = pa.table({"k": keys, "i": pa.array(range(table.num_rows), pa.int64())})
    first = keyed.group_by("k", use_threads=False).aggregate([("i", "min")])["i_min"]
    if len(first) == table.num_rows:
        return table
    return table.take(pc.take(first, pc.sort_indices(first)))


def normalized(table: pa.Table) -> pa.Table:
    """New rows as a version holds them: the first row of each key, sorted by prompt then sample."""
    return _dedupe(as_part_table(table)).sort_by(SORT_KEYS)


def _merged(chunks: list[Chunk]) -> Chunk:
    return lambda: pa.concat_tables([c() for c in chunks]) if chunks else PART_SCHEMA.empty_table()


class _OutOfOrder(Exception):
    """The new chunks overlap: normalizing each alone would not give the whole's order.

    Normalizing chunk by chunk equals normalizing their concatenation when each chunk's keys come
    after the previous chunk's and no prompt spans two chunks (then no key repeats across chunks).
    Runs satisfy this: shards are consecutive slices of the prompt list, and a chunk is one contiguous
    range of shards (a row group of a part, parts.py).
    """


_PARENT = -1  # the chunk number that the parent's rows count under


# ----------------------------------------------------------------------------- the scan


@dataclass
class VersionRows:
    """A version's rows as chunks (the parent's, then the new ones), and what the scan learned."""

    new: list[Chunk]
    parent: list[Chunk]
    stats: RowStats
    # Per-prompt counts. The parent's prompts in a dict, prompt_id -> [accepted, samples, the last
    # chunk that held it]: a prompt may span the parent's row groups, and new rows may add samples to
    # it (from one new chunk: the last slot is the order check). Each new chunk's other prompts as
    # one Arrow table (prompt_id, accepted, samples): no prompt spans two new chunks (checked once
    # the scan is done), so these are never merged, and a million prompts cost tens of MB where a
    # dict of them cost ~200 MB.
    parent_counts: dict[str, list[int]] = field(default_factory=dict)
    chunk_counts: list[pa.Table] = field(default_factory=list)
    published: dict[str, int] = field(default_factory=dict)  # parent prompt_id -> sample bitmask
    rows: dict[str, int] = field(default_factory=lambda: {"default": 0, "all": 0})
    nbytes: dict[str, int] = field(default_factory=lambda: {"default": 0, "all": 0})
    added_rows: int = 0
    added_prompts: int = 0
    skipped_published_rows: int = 0
    _last_key: tuple[Any, Any] | None = None  # (prompt_index, sample_index) ending the last new chunk

    def part_tables(self) -> Iterator[pa.Table]:
        """Every row of the version in order, a chunk at a time, in PART_SCHEMA."""
        for t, _ in self._numbered_tables():
            yield t

    def tables(self, config: str) -> Iterator[pa.Table]:
        """The rows of config `default` or `all`, a chunk at a time, pass_rate filled in."""
        for t, chunk_no in self._numbered_tables():
            t = self._with_pass_rate(t, chunk_no)
            yield _default_rows(t) if config == "default" else t

    def _numbered_tables(self) -> Iterator[tuple[pa.Table, int]]:
        for chunk in self.parent:
            yield chunk(), _PARENT
        for chunk_no, chunk in enumerate(self.new):
            yield self._unpublished(normalized(chunk()))[0], chunk_no

    def prompt_counts(self) -> Iterator[tuple[int, int]]:
        """(accepted, samples) of every prompt of the version, one at a time."""
        for acc, n, _ in self.parent_counts.values():
            yield acc, n
        for g in self.chunk_counts:
            yield from zip(g["accepted"].to_pylist(), g["samples"].to_pylist())

    def summary(self) -> dict[str, Any]:
        return self.stats.summary(self.prompt_counts())

    def _unpublished(self, t: pa.Table) -> tuple[pa.Table, int]:
        """New rows whose key the parent has not published yet; and how many were dropped."""
        if not self.published or t.num_rows == 0:
            return t, 0
        keep = [s is None or s < 0 or not (self.published.get(pid, 0) >> s) & 1
                for pid, s in zip(t["prompt_id"].to_pylist(), t["sample_index"].to_pylist())]
        kept = t.filter(pa.array(keep, pa.bool_()))
        return kept, t.num_rows - kept.num_rows

    def _with_pass_rate(self, t: pa.Table, chunk_no: int) -> pa.Table:
        """PART_SCHEMA rows -> ALL_SCHEMA rows; pass_rate = accepted / samples of the row's prompt,
        over every row of the version."""
        if t.num_rows == 0:
            rates: pa.Array | pa.ChunkedArray = pa.array([], pa.float64())
        else:
            ids = pc.unique(t["prompt_id"])
            acc, n = self._counts_of(ids, chunk_no)
            rate = pc.divide(pc.cast(acc, pa.float64()), pc.cast(n, pa.float64()))
            rates = pc.take(rate, pc.index_in(t["prompt_id"], value_set=ids))
        cols = {n: t[n] for n in PART_SCHEMA.names} | {"pass_rate": rates}
        return pa.table([cols[n] for n in ALL_SCHEMA.names], schema=ALL_SCHEMA)

    def _counts_of(self, ids: pa.Array, chunk_no: int) -> tuple[pa.Array, pa.Array]:
        """(accepted, samples) of each prompt in `ids`, rows of chunk `chunk_no` (or the parent's)."""
        if chunk_no == _PARENT:
            pairs = [self.parent_counts[pid] for pid in ids.to_pylist()]
            return pa.array([c[0] for c in pairs], pa.int64()), pa.array([c[1] for c in pairs], pa.int64())
        g = self.chunk_counts[chunk_no]
        at = pc.index_in(ids, value_set=g["prompt_id"])
        acc, n = pc.take(g["accepted"], at), pc.take(g["samples"], at)
        if at.null_count == 0:  # none of them in the parent: the chunk's own counts
            return acc, n
        # Prompts the parent holds too (an incremental run adding samples): the parent's entry.
        acc_l, n_l = acc.to_pylist(), n.to_pylist()
        for k, pid in enumerate(ids.to_pylist()):
            if acc_l[k] is None:
                acc_l[k], n_l[k] = self.parent_counts[pid][:2]
        return pa.array(acc_l, pa.int64()), pa.array(n_l, pa.int64())

    def _remember_published(self, t: pa.Table) -> None:
        for pid, s in zip(t["prompt_id"].to_pylist(), t["sample_index"].to_pylist()):
            if s is not None and s >= 0:
                self.published[pid] = self.published.get(pid, 0) | (1 << s)

    def _count(self, t: pa.Table, chunk_no: int) -> int:
        """Add one chunk to the per-prompt counts, statistics and totals; returns how many of its
        prompts were not seen before."""
        g = per_prompt(t)
        fresh = 0
        if chunk_no == _PARENT or self.parent_counts:
            # A parent prompt takes the counts of every chunk that holds it.
            in_parent = []
            for pid, acc, n in zip(g["prompt_id"].to_pylist(), g["accepted"].to_pylist(), g["samples"].to_pylist()):
                counts = self.parent_counts.get(pid)
                if counts is None and chunk_no == _PARENT:
                    self.parent_counts[pid] = counts = [0, 0, _PARENT]
                    fresh += 1
                in_parent.append(counts is not None)
                if counts is not None:
                    if chunk_no != _PARENT and counts[2] != _PARENT:
                        raise _OutOfOrder  # in an earlier new chunk too: a key could be kept twice
                    counts[0] += acc
                    counts[1] += n
                    counts[2] = chunk_no
            g = g.filter(pc.invert(pa.array(in_parent, pa.bool_())))
        if chunk_no != _PARENT:
            self.chunk_counts.append(g)
            fresh += g.num_rows
        self.stats.add(t)
        default = t.filter(accepted_mask(t)).select(_DEFAULT_PART_COLUMNS)
        self.rows["all"] += t.num_rows
        self.rows["default"] += default.num_rows
        self.nbytes["all"] += t.nbytes + PASS_RATE_BYTES * t.num_rows
        self.nbytes["default"] += default.nbytes + PASS_RATE_BYTES * default.num_rows
        return fresh

    def _check_order(self, t: pa.Table) -> None:
        """Each new chunk's keys after the previous chunk's (the other half of the order check is
        `_check_distinct`: no prompt in two new chunks)."""
        if t.num_rows == 0:
            return
        first = (t["prompt_index"][0].as_py(), t["sample_index"][0].as_py())
        last = (t["prompt_index"][-1].as_py(), t["sample_index"][-1].as_py())
        if None in first + last or (self._last_key is not None and first <= self._last_key):
            raise _OutOfOrder
        self._last_key = last

    def _check_distinct(self) -> None:
        """No prompt in two new chunks (the parent's prompts are checked as they are counted): one
        hash pass over the new prompts' ids, once, instead of a set of them kept all along."""
        if len(self.chunk_counts) > 1:
            ids = pa.chunked_array([c for g in self.chunk_counts for c in g["prompt_id"].chunks],
                                   self.chunk_counts[0]["prompt_id"].type)
            if pc.count_distinct(ids).as_py() != len(ids):
                raise _OutOfOrder

    def _scan(self) -> None:
        for t in (chunk() for chunk in self.parent):
            self._remember_published(t)
            self._count(t, _PARENT)
        for chunk_no, chunk in enumerate(self.new):
            t = normalized(chunk())
            if len(self.new) > 1:
                self._check_order(t)
            t, skipped = self._unpublished(t)
            self.skipped_published_rows += skipped
            self.added_rows += t.num_rows
            self.added_prompts += self._count(t, chunk_no)
        self._check_distinct()


def _default_rows(all_table: pa.Table) -> pa.Table:
    return all_table.filter(accepted_mask(all_table)).select(DEFAULT_SCHEMA.names).cast(DEFAULT_SCHEMA)


def scan_rows(new: list[Chunk], parent: list[Chunk], verifier_order: list[str]) -> VersionRows:
    """The one pass over every row. New chunks that overlap (not one per consecutive shard) are
    merged into one and scanned again: right, but held in memory at once."""
    rows = VersionRows(new, parent, RowStats(verifier_order))
    try:
        rows._scan()
    except _OutOfOrder:
        log.warning("the new rows' chunks overlap in prompt order: building the version from all of "
                    "them in memory at once")
        rows = VersionRows([_merged(new)], parent, RowStats(verifier_order))
        rows._scan()
    return rows
