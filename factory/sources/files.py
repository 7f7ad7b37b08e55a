"""Local JSONL / JSON / Parquet files. A malformed JSONL line is counted and skipped, not fatal."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from factory.common.files import read_jsonl
from factory.config import ConfigError

log = logging.getLogger(__name__)


def read_file(path: str) -> tuple[list[dict[str, Any]], Counter]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"source.path {p} does not exist (relative paths are read from {Path.cwd()})")
    bad: Counter = Counter()
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(p).to_pylist(), bad
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for line in read_jsonl(p):
            if line.row is not None:
                rows.append(line.row)
            elif line.problem == "invalid_json":
                log.warning("%s:%d: malformed JSON line skipped (%s)", p, line.lineno, line.detail)
                bad["malformed_json_line"] += 1
            else:
                bad["row_not_an_object"] += 1
        return rows, bad
    if suffix == ".json":
        data = json.loads(p.read_text())
        if isinstance(data, dict):  # {"data": [...]} or column-oriented
            data = data.get("data", data.get("rows", data))
        if not isinstance(data, list):
            raise ConfigError(f"{p}: expected a JSON list of objects")
        return [r for r in data if isinstance(r, dict)], bad
    raise ConfigError(f"source.path {p}: unsupported file type {suffix!r}; use .jsonl, .json or .parquet")
