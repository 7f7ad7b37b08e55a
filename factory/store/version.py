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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from factory.store import card as card_mod
from factory.store.manifest import (
    CARD_NAME,
    MANIFEST_NAME,
    VersionError,
    accepted_mask,
    base_manifest,
    dumps,
    file_entry,
    finalize,
    load_manifest,
    now_utc,
    per_prompt,
    table_stats,
    verifier_names,
    verify_files,
)
from factory.store.parts import fsync_dir, write_parquet_durably
from factory.store.schema import ALL_SCHEMA, DEFAULT_SCHEMA, PART_SCHEMA

__all__ = ["VersionError", "VersionInfo", "build_version", "clean_stale_builds", "latest_version",
           "list_versions", "load_manifest", "read_version_table", "verify_files"]

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


def version_number(name: str) -> int | None:
    """3 for "v3"; None for anything else ("v03", ".build-...", "v")."""
    digits = name[1:]
    if name[:1] == "v" and digits.isdigit() and not digits.startswith("0"):
        return int(digits)
    return None


def read_version_table(version_dir: str | Path, config: str = "all") -> pa.Table:
    """One config of a version, its files in manifest order, in that config's schema."""
    if config not in CONFIGS:
        raise VersionError(f"unknown config {config!r}; configs are {sorted(CONFIGS)}")
    version_dir = Path(version_dir)
    schema = CONFIGS[config]
    entries = [f for f in load_manifest(version_dir)["files"] if f["config"] == config]
    tables = [pq.read_table(version_dir / f["path"], schema=schema) for f in entries]
    return pa.concat_tables(tables) if tables else schema.empty_table()


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


# ----------------------------------------------------------------------------- table work


def _as_part_table(table: pa.Table) -> pa.Table:
    """Accept PART_SCHEMA or ALL_SCHEMA columns (pass_rate is dropped: it is recomputed)."""
    missing = [n for n in PART_SCHEMA.names if n not in table.column_names]
    if missing:
        raise VersionError(f"table lacks columns {missing}; expected the part schema {PART_SCHEMA.names}")
    return table.select(PART_SCHEMA.names).cast(PART_SCHEMA)


def _keys(table: pa.Table) -> pa.Array:
    """One string per row for (prompt_id, sample_index); \\x1f never occurs in a hash or an id."""
    if table.num_rows == 0:
        return pa.array([], pa.string())
    joined = pc.binary_join_element_wise(
        table["prompt_id"], pc.cast(table["sample_index"], pa.string()), "\x1f")
    return pa.concat_arrays(joined.chunks)


def _dedupe(table: pa.Table) -> pa.Table:
    """Keep the first row of each key (parts never repeat a key; this guards odd callers)."""
    if table.num_rows == 0:
        return table
    keyed = pa.table({"k": _keys(table), "i": pa.array(range(table.num_rows), pa.int64())})
    first = keyed.group_by("k", use_threads=False).aggregate([("i", "min")])["i_min"]
    if len(first) == table.num_rows:
        return table
    return table.take(pc.take(first, pc.sort_indices(first)))


def _with_pass_rate(table: pa.Table) -> pa.Table:
    """PART_SCHEMA rows -> ALL_SCHEMA rows; pass_rate = accepted / samples of the row's prompt."""
    if table.num_rows == 0:
        rates: pa.Array | pa.ChunkedArray = pa.array([], pa.float64())
    else:
        g = per_prompt(table)
        rate = pc.divide(pc.cast(g["accepted"], pa.float64()), pc.cast(g["samples"], pa.float64()))
        rates = pc.take(rate, pc.index_in(table["prompt_id"], value_set=g["prompt_id"]))
    cols = {n: table[n] for n in PART_SCHEMA.names} | {"pass_rate": rates}
    return pa.table([cols[n] for n in ALL_SCHEMA.names], schema=ALL_SCHEMA)


def _default_rows(all_table: pa.Table) -> pa.Table:
    return all_table.filter(accepted_mask(all_table)).select(DEFAULT_SCHEMA.names).cast(DEFAULT_SCHEMA)


# ----------------------------------------------------------------------------- writing


_WRITE_PARAMS = set(inspect.signature(pq.write_table).parameters)


def _parquet_options(table: pa.Table) -> dict[str, Any]:
    avg = max(1, table.nbytes // max(1, table.num_rows))
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


def _write_config(root: Path, config: str, table: pa.Table) -> list[dict[str, Any]]:
    """data/<config>/train-XXXXX-of-YYYYY.parquet; always at least one file, even with no rows,
    so the config loads (as empty) instead of failing on an empty glob."""
    out_dir = root / "data" / config
    out_dir.mkdir(parents=True)
    n_files = max(1, math.ceil(table.num_rows / ROWS_PER_FILE))
    opts = _parquet_options(table)
    entries = []
    for i in range(n_files):
        part = table.slice(i * ROWS_PER_FILE, ROWS_PER_FILE)
        rel = f"data/{config}/{SPLIT}-{i:05d}-of-{n_files:05d}.parquet"
        write_parquet_durably(part, root / rel, **opts)
        entries.append(file_entry(root, rel, config, SPLIT, part.num_rows))
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
    """Rename tmp to the next free vN, writing the card and manifest for that N first."""
    number = _next_number(dataset_dir)
    while True:
        manifest = finalize(base, number)
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


def build_version(dataset_dir: str | Path, table: pa.Table, info: dict[str, Any],
                  parent: str | Path | None = None) -> Path:
    """Publish `table` (`all` rows, PART_SCHEMA) as the next immutable vN; returns its path.

    With `parent` (an earlier version dir) the version is the parent's rows + the new rows whose
    key is not published yet (see the module docstring). Any failure leaves no vN and no temp dir.
    """
    dataset_dir = Path(dataset_dir)
    dataset_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_builds(dataset_dir)

    new = _dedupe(_as_part_table(table))
    new = new.sort_by([("prompt_index", "ascending"), ("sample_index", "ascending")])
    parent_manifest: dict[str, Any] | None = None
    skipped = 0
    if parent is not None:
        parent = Path(parent)
        problems = verify_files(parent)
        if problems:
            raise VersionError(f"parent version {parent} fails its manifest check: {problems[:5]}")
        parent_manifest = load_manifest(parent)
        old = _as_part_table(read_version_table(parent, "all"))
        published = pc.is_in(_keys(new), value_set=_keys(old)) if new.num_rows else pa.array([], pa.bool_())
        skipped = int(pc.sum(pc.cast(published, pa.int64())).as_py() or 0)
        new = new.filter(pc.invert(published))
        new_ids = pc.unique(new["prompt_id"])
        old_ids = pa.concat_arrays(old["prompt_id"].chunks) if old.num_rows else pa.array([], pa.string())
        seen = pc.sum(pc.cast(pc.is_in(new_ids, value_set=old_ids), pa.int64())).as_py() or 0
        added_prompts = len(new_ids) - int(seen)
        combined = pa.concat_tables([old, new])
    else:
        added_prompts = len(pc.unique(new["prompt_id"]))
        combined = new

    all_table = _with_pass_rate(combined)
    change = {
        "created_at": now_utc(),
        "parent": parent_manifest.get("version") if parent_manifest else None,
        "added_prompts": added_prompts,
        "added_rows": new.num_rows,
        "skipped_published_rows": skipped,
        "message": (f"added {added_prompts} prompts, {new.num_rows} rows" if parent_manifest
                    else f"first version: {added_prompts} prompts, {new.num_rows} rows"),
    }

    tmp = dataset_dir / f"{BUILD_PREFIX}{_HOST_TAG}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files = (_write_config(tmp, "default", _default_rows(all_table))
                 + _write_config(tmp, "all", all_table))
        stats = table_stats(all_table, verifier_names(info))
        base = base_manifest(dataset_dir.name, info, stats, files, parent_manifest, change)
        target = _claim(tmp, dataset_dir, base)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(dataset_dir)
    _make_read_only(target)
    return target
