"""Local JSONL / JSON / Parquet files.

A row that cannot be read (a malformed JSONL line, bytes that are not UTF-8, a line that is not
an object) is rejected with its reason and its line, never dropped silently; the input policy in
factory/sources/__init__.py decides whether the run may go on without it. The file's sha256 is
the input's identity: a run resumed on an edited file must not mix the two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from factory.common.files import read_jsonl, sha256_file
from factory.config import ConfigError
from factory.sources.rejects import Rejects


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


def read_file(path: str, rejects: Rejects) -> tuple[list[dict[str, Any]], list[int], str]:
    """(rows, each row's line (JSONL) or row number (Parquet, JSON), the file's sha256)."""
    p = check_path(path)
    digest = sha256_file(p)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(p).to_pylist()
        return rows, list(range(1, len(rows) + 1)), digest
    if suffix == ".json":
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
        rows, lines = [], []
        for k, r in enumerate(data, 1):
            if isinstance(r, dict):
                rows.append(r)
                lines.append(k)
            else:
                rejects.add("row_not_an_object", k)
        return rows, lines, digest
    rows, lines = [], []
    for line in read_jsonl(p):
        if line.row is not None:
            rows.append(line.row)
            lines.append(line.lineno)
        else:
            reason = {"invalid_json": "malformed_json_line", "not_an_object": "row_not_an_object"}
            rejects.add(reason.get(line.problem or "", line.problem or "unreadable_line"), line.lineno)
    return rows, lines, digest
