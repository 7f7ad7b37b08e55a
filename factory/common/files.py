"""Reading the files factory reads everywhere: hashes, JSON lines, YAML config files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from factory.errors import ConfigError


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass(frozen=True, slots=True)
class JsonLine:
    """One non-blank line of a JSONL file: `row` when it is a JSON object, else `problem`
    ("not_utf8" or "invalid_json" with the decoder's `detail`, or "not_an_object")."""

    lineno: int
    row: dict[str, Any] | None
    problem: str | None = None
    detail: str = ""


def read_jsonl(path: str | Path) -> Iterator[JsonLine]:
    """Every non-blank line of `path`, streamed; a bad line is reported, never raised, so each
    caller decides whether it is skipped (sources) or kept as a rejected row (reverify)."""
    with Path(path).open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:  # UTF-8 only: json.loads(bytes) would guess UTF-16/32 from a stray byte pair
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield JsonLine(lineno, None, "not_utf8", str(e))
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                yield JsonLine(lineno, None, "invalid_json", str(e))
                continue
            if isinstance(obj, dict):
                yield JsonLine(lineno, obj)
            else:
                yield JsonLine(lineno, None, "not_an_object")


def load_yaml_file(path: str | Path, missing_hint: str = "") -> dict[str, Any]:
    """A YAML file whose top level is a mapping (an empty file is {}). Raises ConfigError with
    what is wrong: not found (plus `missing_hint`), not YAML, not a mapping."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found{missing_hint}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config {p} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {p} must be a mapping at the top level")
    return data
