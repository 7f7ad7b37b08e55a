"""Local JSONL / JSON / Parquet files. A malformed JSONL line is counted and skipped, not fatal."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

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
        with p.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    log.warning("%s:%d: malformed JSON line skipped (%s)", p, lineno, e)
                    bad["malformed_json_line"] += 1
                    continue
                if not isinstance(row, dict):
                    bad["row_not_an_object"] += 1
                    continue
                rows.append(row)
        return rows, bad
    if suffix == ".json":
        data = json.loads(p.read_text())
        if isinstance(data, dict):  # {"data": [...]} or column-oriented
            data = data.get("data", data.get("rows", data))
        if not isinstance(data, list):
            raise ConfigError(f"{p}: expected a JSON list of objects")
        return [r for r in data if isinstance(r, dict)], bad
    raise ConfigError(f"source.path {p}: unsupported file type {suffix!r}; use .jsonl, .json or .parquet")
