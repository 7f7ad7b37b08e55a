"""Immutable local versions: STORE/NAME/vN/{README.md, manifest.json, data/<config>/*.parquet}.

A version is built in a hidden temp dir inside the dataset dir, fsynced, then renamed to the next
free `vN` in one step, so a reader sees either a whole version or none, and a failure leaves no
vN. Files are made read-only afterwards (a hint: a version is never rewritten).

Incremental mode (`parent=`): the new version holds the parent's `all` rows, in their published
order, then the new rows. A (prompt_id, sample_index) key already published keeps its published
row and the new one is dropped: a version only adds, so vN+1 agrees with vN on every row they
share, and the changelog's "added M rows" is exactly the difference. Only `pass_rate`, a
per-prompt aggregate, is recomputed over the union (a prompt that got more samples gets a truer
rate).

The build streams (factory.store.rows): it holds a chunk of rows and a row group at a time, never
all of a version's rows, so a run of any size publishes in the same memory.

Callers hold `dataset_lock(dataset_dir)` while building (the runner does, for the whole run).
"""

from __future__ import annotations

import errno
import inspect
import os
import shutil
import socket
import hashlib
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from factory.report import build as report
from factory.store import card as card_mod
from factory.store.manifest import (
    CARD_NAME,
    MANIFEST_NAME,
    VersionError,
    base_manifest,
    dumps,
    file_entry,
    finalize,
    jsonable,
    load_manifest,
    load_verified_manifest,
    now_utc,
    verifier_names,
    verify_files,
)
from factory.store.layout import config_dir, version_number
from factory.store.parts import RunDir, fsync_dir, write_parquet_durably
from factory.store.rows import VersionRows, run_chunks, scan_rows, table_chunks, version_chunks
from factory.store.schema import ALL_SCHEMA, DEFAULT_SCHEMA

__all__ = ["VersionError", "VersionInfo", "build_version", "clean_stale_builds", "latest_version",
           "list_versions", "load_manifest", "read_version_table", "verify_files", "version_number"]

CONFIGS = {"default": DEFAULT_SCHEMA, "all": ALL_SCHEMA}
SPLIT = "train"
ROWS_PER_FILE = 200_000  # more rows than this: several files per config
ROW_GROUP_TARGET_BYTES = 32 * 1024 * 1024  # uncompressed; keeps the Hub viewer's reads small
ROW_GROUP_ROWS = (100, 100_000)
BUILD_PREFIX = ".build-"
_HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


@dataclass(slots=True)
class VersionInfo:
    version: str  # "v3"
    number: int
    path: Path
    created_at: str | None
    rows: dict[str, int]  # config -> rows
    teacher_model: str | None
    fingerprint: str | None
    counts: dict[str, Any] = field(default_factory=dict)  # generations, accepted, rejected...
    parent: str | None = None
    run_id: str | None = None


# ----------------------------------------------------------------------------- reading


def read_version_table(version_dir: str | Path, config: str = "all") -> pa.Table:
    """One config of a version, its files in manifest order, in that config's schema."""
    if config not in CONFIGS:
        raise VersionError(f"unknown config {config!r}; configs are {sorted(CONFIGS)}")
    version_dir = Path(version_dir)
    schema = CONFIGS[config]
    entries = [f for f in load_manifest(version_dir)["files"] if f["config"] == config]
    tables = [pq.read_table(version_dir / f["path"], schema=schema) for f in entries]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def published_prompt_ids(version_dir: str | Path) -> set[str]:
    """Every prompt_id a version holds (its `all` config), reading that one column only."""
    published: set[str] = set()
    for f in sorted(config_dir(version_dir, "all").glob("*.parquet")):
        published.update(pq.read_table(f, columns=["prompt_id"]).column(0).to_pylist())
    return published


def list_versions(dataset_dir: str | Path) -> list[VersionInfo]:
    """Published versions (vN dirs with a manifest), oldest first; temp build dirs are skipped."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        return []
    out: list[VersionInfo] = []
    for p in dataset_dir.iterdir():
        n = version_number(p.name)
        if n is None or not (p / MANIFEST_NAME).is_file():
            continue
        m = load_manifest(p)
        out.append(VersionInfo(
            version=p.name,
            number=n,
            path=p,
            created_at=m.get("created_at"),
            rows={k: v.get("rows", 0) for k, v in (m.get("configs") or {}).items()},
            teacher_model=(m.get("teacher") or {}).get("model"),
            fingerprint=m.get("fingerprint"),
            counts=m.get("counts") or {},
            parent=m.get("parent"),
            run_id=m.get("run_id"),
        ))
    return sorted(out, key=lambda v: v.number)


def latest_version(dataset_dir: str | Path) -> Path | None:
    versions = list_versions(dataset_dir)
    return versions[-1].path if versions else None


# ----------------------------------------------------------------------------- writing


_WRITE_PARAMS = set(inspect.signature(pq.write_table).parameters)


def _parquet_options(nbytes: int, rows: int) -> dict[str, Any]:
    """Row groups of about ROW_GROUP_TARGET_BYTES, from the config's average row (in memory)."""
    avg = max(1, nbytes // max(1, rows))
    lo, hi = ROW_GROUP_ROWS
    opts: dict[str, Any] = {
        "compression": "zstd",
        "row_group_size": max(lo, min(hi, ROW_GROUP_TARGET_BYTES // avg)),
    }
    # Content-defined pages (pyarrow >= 21): vN+1's files start with vN's rows, so the Hub's
    # chunk dedup stores and uploads mostly the new pages of an incremental version.
    if "use_content_defined_chunking" in _WRITE_PARAMS:
        opts["use_content_defined_chunking"] = True
    if "write_page_index" in _WRITE_PARAMS:
        opts["write_page_index"] = True  # lets readers (the Hub viewer) fetch single pages
    return opts


class _Rows:
    """Rows from a stream of chunks, taken n at a time as one contiguous table (one row group).

    Contiguous, because the Parquet writer cuts pages where chunks end: one contiguous group gives
    the pages, and so the bytes, that writing the whole config as one table gave.
    """

    def __init__(self, chunks: Iterator[pa.Table]):
        self._chunks = chunks
        self._held: list[pa.Table] = []
        self._count = 0

    def take(self, n: int) -> pa.Table:
        self._fill(n)
        held = pa.concat_tables(self._held)
        self._held, self._count = [held.slice(n)], self._count - n
        schema, columns = held.schema, held.slice(0, n).columns
        del held  # from here on only `columns` holds the group's chunks
        return _contiguous(schema, columns)

    def left(self) -> int:
        return self._count + sum(c.num_rows for c in self._chunks)

    def _fill(self, n: int) -> None:
        while self._count < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise VersionError(f"the rows ran out: {n - self._count} fewer than the scan counted")
            self._held.append(chunk)
            self._count += chunk.num_rows


def _contiguous(schema: pa.Schema, columns: list[pa.ChunkedArray]) -> pa.Table:
    """One table of one chunk per column, copied a column at a time; each column's chunks are
    dropped once copied, so the peak is the group plus one column, not two groups."""
    for i, column in enumerate(columns):
        columns[i] = column.combine_chunks()
    return pa.table(columns, schema=schema)


def _write_config(root: Path, config: str, rows: VersionRows) -> list[dict[str, Any]]:
    """data/<config>/train-XXXXX-of-YYYYY.parquet, ROWS_PER_FILE rows each, written a row group at
    a time; always at least one file, even with no rows, so the config loads (as empty) instead of
    failing on an empty glob."""
    out_dir = root / "data" / config
    out_dir.mkdir(parents=True)
    total = rows.rows[config]
    n_files = max(1, math.ceil(total / ROWS_PER_FILE))
    opts = _parquet_options(rows.nbytes[config], total)
    group = opts["row_group_size"]
    stream = _Rows(rows.tables(config))
    entries = []
    for i in range(n_files):
        in_file = min(ROWS_PER_FILE, total - i * ROWS_PER_FILE)
        groups = (stream.take(min(group, in_file - k)) for k in range(0, in_file, group))
        rel = f"data/{config}/{SPLIT}-{i:05d}-of-{n_files:05d}.parquet"
        write_parquet_durably(groups, root / rel, schema=CONFIGS[config], **opts)
        entries.append(file_entry(root, rel, config, SPLIT, in_file))
    if stream.left():
        raise VersionError(f"config {config}: {stream.left()} more rows than the scan counted")
    fsync_dir(out_dir)
    fsync_dir(out_dir.parent)
    return entries


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _next_number(dataset_dir: Path) -> int:
    """One past the highest vN name present, complete or not (a number is never reused)."""
    nums = [n for p in dataset_dir.iterdir() if (n := version_number(p.name)) is not None]
    return max(nums, default=0) + 1


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_builds(dataset_dir: str | Path) -> list[Path]:
    """Remove temp build dirs left by dead processes of this host (a SIGKILL mid-build)."""
    dataset_dir = Path(dataset_dir)
    removed: list[Path] = []
    if not dataset_dir.is_dir():
        return removed
    for p in dataset_dir.iterdir():
        if not p.name.startswith(BUILD_PREFIX):
            continue
        parts = p.name[len(BUILD_PREFIX):].split("-")
        if len(parts) != 3 or parts[0] != _HOST_TAG or not parts[1].isdigit():
            continue  # another host's build on a shared filesystem: not ours to judge
        if not _pid_alive(int(parts[1])):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _make_read_only(version_dir: Path) -> None:
    # Files only: read-only dirs would make a deliberate `rm -rf` of an old version fail.
    for p in version_dir.rglob("*"):
        if p.is_file():
            try:
                p.chmod(p.stat().st_mode & ~0o222)
            except OSError:
                pass  # a hint, not a guarantee; the version is complete either way


def _claim(tmp: Path, dataset_dir: Path, base: dict[str, Any]) -> Path:
    """Rename tmp to the next free vN, writing the report, card and manifest for that N first."""
    number = _next_number(dataset_dir)
    while True:
        manifest = finalize(base, number)
        # report.html names its version, so it is written (and hashed) once the number is known.
        rel = report.write_report(tmp, manifest)
        manifest["files"].append(file_entry(tmp, rel, None, None, None))
        _write_text(tmp / CARD_NAME, card_mod.render_card(manifest))
        _write_text(tmp / MANIFEST_NAME, dumps(manifest))
        fsync_dir(tmp)
        target = dataset_dir / manifest["version"]
        # lexists first: rename() would silently replace an *empty* directory of that name.
        if not os.path.lexists(target):
            try:
                os.rename(tmp, target)
                return target
            except OSError as e:  # another builder took this N between the check and the rename
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                    raise
        number += 1  # never overwrite: take the next number


def build_version(dataset_dir: str | Path, rows: pa.Table | RunDir, info: dict[str, Any],
                  parent: str | Path | None = None) -> Path:
    """Publish `rows` (`all` rows, PART_SCHEMA) as the next immutable vN; returns its path.

    `rows` is a table, or a run whose committed parts are read one at a time: the build holds a
    chunk of rows and per-prompt counts, never the whole run (factory.store.rows). With `parent`
    (an earlier version dir) the version is the parent's rows + the new rows whose key is not
    published yet (see the module docstring). Any failure leaves no vN and no temp dir.
    """
    dataset_dir = Path(dataset_dir)
    dataset_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_builds(dataset_dir)

    parent_manifest: dict[str, Any] | None = None
    if parent is not None:
        parent = Path(parent)
        parent_manifest = load_verified_manifest(parent, "parent version")
    new = run_chunks(rows) if isinstance(rows, RunDir) else table_chunks(rows)
    scanned = scan_rows(new, version_chunks(parent) if parent is not None else [], verifier_names(info))
    added_prompts, added_rows = scanned.added_prompts, scanned.added_rows
    change = {
        "created_at": now_utc(),
        "parent": parent_manifest.get("version") if parent_manifest else None,
        "added_prompts": added_prompts,
        "added_rows": added_rows,
        "skipped_published_rows": scanned.skipped_published_rows,
        "message": (f"added {added_prompts} prompts, {added_rows} rows" if parent_manifest
                    else f"first version: {added_prompts} prompts, {added_rows} rows"),
    }

    tmp = dataset_dir / f"{BUILD_PREFIX}{_HOST_TAG}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files = _write_config(tmp, "default", scanned) + _write_config(tmp, "all", scanned)
        plots, seen = report.write_plots(tmp, [tmp / f["path"] for f in files if f["config"] == "all"],
                                         info.get("sampling") or {}, scanned.prompt_counts())
        files += [file_entry(tmp, p["path"], None, None, None) for p in plots]
        base = base_manifest(dataset_dir.name, info, scanned.summary(), files, parent_manifest, change)
        base["plots"], base["examples"] = plots, jsonable(seen.chosen_examples())
        target = _claim(tmp, dataset_dir, base)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(dataset_dir)
    _make_read_only(target)
    return target
