"""`factory verify`'s inputs: a version dir, or a JSONL / JSON / Parquet file of rows, read in
batches under ONE schema inferred from the whole file; and the verifiers to run on them
(`resolve_config`: named ones, a YAML config, the version's own, or defaults by columns).

A JSONL line that is not a JSON object is kept as a row and marked, so `run` can reject it with
reason "input:invalid_json" / "input:not_utf8" / "input:not_an_object" instead of losing it.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from factory.common.files import load_yaml_file, read_jsonl
from factory.config import Config, ConfigError, load_config
from factory.errors import UserError
from factory.store.layout import MANIFEST_NAME
from factory.store.manifest import load_verified_manifest
from factory.store.schema import ALL_SCHEMA
from factory.store.version import latest_version
from factory.verifiers.parsing import EXTRACTION_MODES

log = logging.getLogger(__name__)

BATCH_ROWS = 1000
# VerifyStage takes a run Config, whose source is irrelevant when nothing is generated.
_PLACEHOLDER_SOURCE = {"builtin": "arithmetic"}


# ----------------------------------------------------------------------------- input


@dataclass
class Input:
    """Where rows come from; `batches()` yields (table, {row in batch: input reason})."""

    path: Path
    kind: str  # "version" | "jsonl" | "json" | "parquet"
    schema: pa.Schema
    num_rows: int
    manifest: dict[str, Any] | None = None
    files: list[Path] = field(default_factory=list)
    mixed: frozenset[str] = frozenset()  # JSON columns of several types, read as text

    def batches(self, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[pa.Table, dict[int, str]]]:
        if self.kind in ("version", "parquet"):
            for f in self.files:
                pf = pq.ParquetFile(f)
                for b in pf.iter_batches(batch_size=batch_rows):
                    yield pa.Table.from_batches([b]).cast(self.schema), {}
        elif self.kind == "jsonl":
            for rows, bad in _jsonl_chunks(self.path, batch_rows):
                yield pa.Table.from_pylist(_as_text_columns(rows, self.mixed), schema=self.schema), bad
        else:
            rows = _json_array(self.path)  # a JSON array is read whole; JSON lines stream
            for start in range(0, len(rows), batch_rows):
                chunk = _as_text_columns(rows[start:start + batch_rows], self.mixed)
                yield pa.Table.from_pylist(chunk, schema=self.schema), {}


def _jsonl_chunks(path: Path, batch_rows: int,
                  warn: bool = True) -> Iterator[tuple[list[dict[str, Any]], dict[int, str]]]:
    rows: list[dict[str, Any]] = []
    bad: dict[int, str] = {}
    for line in read_jsonl(path):
        if line.row is None:
            if warn and line.problem in ("invalid_json", "not_utf8"):
                log.warning("%s:%d: not valid JSON (%s); kept as a row with reason input:%s",
                            path, line.lineno, line.detail, line.problem)
            bad[len(rows)] = line.problem or "invalid_json"
        rows.append(line.row if line.row is not None else {})
        if len(rows) >= batch_rows:
            yield rows, bad
            rows, bad = [], {}
    if rows:
        yield rows, bad


def _json_array(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({e}); for one object per line name it .jsonl") from None
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON array of rows (or JSON lines in a .jsonl file)")
    return [r if isinstance(r, dict) else {} for r in data]


def _infer_schema(chunks: Iterator[list[dict[str, Any]]], path: Path) -> tuple[pa.Schema, int, frozenset[str]]:
    """One schema for the whole file, so every batch is written with the same columns: each
    chunk's types, unified (null -> any, int -> float, struct fields merged). A column whose
    values disagree (answers that are sometimes 42, sometimes "\\frac{1}{2}") becomes text."""
    types: dict[str, pa.DataType] = {}
    mixed: set[str] = set()
    n = 0
    for rows in chunks:
        n += len(rows)
        for k in dict.fromkeys(k for r in rows for k in r):  # every key, not just row 0's
            if k in mixed:
                continue
            try:
                t = pa.array([r.get(k) for r in rows]).type
                if k in types:
                    t = pa.unify_schemas([pa.schema([(k, types[k])]), pa.schema([(k, t)])],
                                         promote_options="permissive").field(k).type
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                mixed.add(k)
                t = pa.string()
            types[k] = t
    if mixed:
        log.warning("%s: columns %s hold values of different types; they are read as text (JSON for "
                    "non-strings)", path, sorted(mixed))
    return pa.schema(list(types.items())), n, frozenset(mixed)


def _as_text_columns(rows: list[dict[str, Any]], mixed: frozenset[str]) -> list[dict[str, Any]]:
    if not mixed:
        return rows
    out = []
    for r in rows:
        r = dict(r)
        for k in mixed:
            v = r.get(k)
            if v is not None and not isinstance(v, str):
                r[k] = json.dumps(v, sort_keys=True)
        out.append(r)
    return out


def is_version(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST_NAME).is_file()


def open_input(path: str | Path, batch_rows: int = BATCH_ROWS) -> Input:
    """A version dir (STORE/NAME/vN; STORE/NAME means its newest), or a .jsonl/.json/.parquet file."""
    p = Path(path).expanduser()
    if p.is_dir() and not is_version(p):
        latest = latest_version(p)
        if latest is None:
            raise UserError(f"{p} is a directory but neither a version (no manifest.json) "
                            "nor a dataset dir with versions")
        log.warning("%s: verifying its newest version, %s", p, latest.name)
        p = latest
    if is_version(p):
        manifest = load_verified_manifest(p)
        files = [p / f["path"] for f in manifest["files"] if f["config"] == "all"]
        rows = sum(f["rows"] for f in manifest["files"] if f["config"] == "all")
        return Input(p, "version", ALL_SCHEMA, rows, manifest, files)
    if not p.is_file():
        raise UserError(f"{p} does not exist (expected a version dir or a .jsonl/.json/.parquet file)")
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        try:
            pf = pq.ParquetFile(p)
        except (pa.ArrowInvalid, OSError) as e:
            raise UserError(f"{p} is not a readable Parquet file ({e})") from None
        return Input(p, "parquet", pf.schema_arrow, pf.metadata.num_rows, None, [p])
    if suffix in (".jsonl", ".ndjson"):
        schema, n, mixed = _infer_schema((rows for rows, _ in _jsonl_chunks(p, batch_rows, warn=False)), p)
        return Input(p, "jsonl", schema, n, mixed=mixed)
    if suffix == ".json":
        rows = _json_array(p)
        schema, n, mixed = _infer_schema(iter([rows]), p)
        return Input(p, "json", schema, n, mixed=mixed)
    raise UserError(f"{p}: unsupported file type {suffix!r}; use .jsonl, .json or .parquet (or a version dir)")


# ----------------------------------------------------------------------------- config


def resolve_config(inp: Input, config_path: str | Path | None = None, verifiers: list[str] | None = None,
                   overrides: list[str] | None = None, extraction: str | None = None) -> Config:
    """The verifiers to run: `verifiers` names (default params), else a YAML config (a run config,
    or just a `verifiers:` list), else the version's own, else truncation + math (+ code instead
    of math for rows with `tests`). `overrides` are `--set` items applied on top."""
    if config_path is not None:
        data = load_yaml_file(config_path)
        origin = str(Path(config_path))
    elif inp.manifest is not None:
        # Only what verification needs: the rest of an old run config may not validate any more.
        m = inp.manifest
        run_cfg = m.get("config") or {}
        specs = run_cfg.get("verifiers")
        if specs is None:  # an older manifest: rebuild specs from the verifiers' descriptions
            specs = [{"name": v["name"], **(v.get("params") or {})} for v in m.get("verifiers") or []]
        data = {"verifiers": copy.deepcopy(specs),
                "teacher": {"expects_think_tags": bool((run_cfg.get("teacher") or {}).get("expects_think_tags"))}}
        origin = f"(the verifiers of {inp.path})"
    else:
        data = {}
        origin = "(defaults)"
    data.setdefault("source", dict(_PLACEHOLDER_SOURCE))
    if verifiers:
        data["verifiers"] = [{"name": n} for n in verifiers]
    elif not data.get("verifiers") and inp.kind != "version":
        names = inp.schema.names
        checker = "code" if "tests" in names and "reference" not in names else "math"
        data["verifiers"] = [{"name": "truncation"}, {"name": checker}]
    if extraction is not None:
        if extraction not in EXTRACTION_MODES:
            raise ConfigError(f"--extraction {extraction!r} unknown; modes are: {', '.join(EXTRACTION_MODES)}")
        for spec in data.get("verifiers") or []:
            if isinstance(spec, dict) and spec.get("name") == "math":
                spec["extraction"] = extraction
    return load_config(None, overrides, origin=origin, data=data)
