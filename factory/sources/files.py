"""Local JSONL / JSON / Parquet files, read a chunk at a time.

A row that cannot be read (a malformed JSONL line, bytes that are not UTF-8, a line that is not
an object) is rejected with its reason and its line, never dropped silently; the input policy in
factory/sources/__init__.py decides whether the run may go on without it. The file's sha256 is
the input's identity: a run resumed on an edited file must not mix the two.

JSONL is read line by line and Parquet a record batch at a time (`CHUNK_ROWS`), so the driver
holds one chunk of rows, never the file. A `.json` file is one JSON document and is parsed whole:
use JSONL or Parquet for large inputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from factory.common.files import read_jsonl, sha256_file
from factory.config import ConfigError
from factory.sources.rejects import Rejects

CHUNK_ROWS = 4096  # rows turned into Python at once (Parquet batches, Hub splits): a buffer, not the input


def check_path(path: str) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"source.path {p} is a directory; point it at one .jsonl, .json or .parquet file "
                          "(e.g. --set source.path=DIR/train.jsonl)")
    if not p.is_file():
        raise ConfigError(f"source.path {p} does not exist (relative paths are read from {Path.cwd()})")
    if p.suffix.lower() not in (".parquet", ".jsonl", ".ndjson", ".json"):
        raise ConfigError(f"source.path {p}: unsupported file type {p.suffix!r}; use .jsonl, .json or .parquet")
    return p


def file_digest(path: str) -> str:
    return sha256_file(check_path(path))


def file_rows(path: str, rejects: Rejects, chunk_rows: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line (JSONL) or row number (Parquet, JSON), row) of every readable row, in file order."""
    p = check_path(path)
    chunk_rows = chunk_rows or CHUNK_ROWS
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        k = 0
        with pq.ParquetFile(p) as f:
            for batch in f.iter_batches(batch_size=chunk_rows):
                for row in batch.to_pylist():
                    k += 1
                    yield k, row
        return
    if suffix == ".json":
        yield from _json_rows(p, rejects)
        return
    reason = {"invalid_json": "malformed_json_line", "not_an_object": "row_not_an_object"}
    for line in read_jsonl(p):
        if line.row is not None:
            yield line.lineno, line.row
        else:
            rejects.add(reason.get(line.problem or "", line.problem or "unreadable_line"), line.lineno)


def _json_rows(p: Path, rejects: Rejects) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p} is not UTF-8 (byte {e.start}: {e.reason}); re-encode it, e.g. "
                          f"`iconv -f latin1 -t utf-8 {p} > fixed.json`") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p} is not valid JSON (line {e.lineno}: {e.msg})") from None
    if isinstance(data, dict):  # {"data": [...]} or column-oriented
        data = data.get("data", data.get("rows", data))
    if not isinstance(data, list):
        raise ConfigError(f"{p}: expected a JSON list of objects")
    for k, r in enumerate(data, 1):
        if isinstance(r, dict):
            yield k, r
        else:
            rejects.add("row_not_an_object", k)
