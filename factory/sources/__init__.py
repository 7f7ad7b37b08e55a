"""Sources: rows from the builtin set, a local file or a Hub dataset, mapped to Prompts.

Bad rows never stop a run and are never dropped silently: each is counted with its reason
(`input_rejected` in the summary and manifest). A wrong column name stops the run before any engine
starts, with the columns that do exist in the message.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from factory.config import Config, ConfigError, SourceConfig
from factory.sources.prompting import build_messages
from factory.types import Prompt


@dataclass
class PromptSet:
    prompts: list[Prompt]
    info: dict[str, Any]  # for the manifest and card: kind, name, revision, split, counts
    input_rejected: Counter = field(default_factory=Counter)


def content_id(problem: str, reference: str | None) -> str:
    return hashlib.sha256(json.dumps([problem, reference]).encode()).hexdigest()[:16]


def read_rows(src: SourceConfig) -> tuple[list[dict[str, Any]], dict[str, Any], Counter]:
    if src.builtin:
        from factory.sources.builtin import BUILTIN_SETS

        if src.builtin not in BUILTIN_SETS:
            raise ConfigError(f"source.builtin {src.builtin!r} unknown; builtin sets: {sorted(BUILTIN_SETS)}")
        return BUILTIN_SETS[src.builtin](), {"kind": "builtin", "name": f"builtin:{src.builtin}"}, Counter()
    if src.path:
        from factory.sources.files import read_file

        rows, bad = read_file(src.path)
        return rows, {"kind": "file", "name": src.path}, bad
    from factory.sources.hub import read_hub

    rows, revision = read_hub(src)
    return rows, {"kind": "hub", "name": src.dataset, "subset": src.subset, "split": src.split,
                  "revision": revision}, Counter()


def _as_reference(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)  # e.g. code tests ({"inputs": [...], "outputs": [...]})


def load_prompts(cfg: Config) -> PromptSet:
    src = cfg.source
    rows, info, rejected = read_rows(src)
    cols = src.columns
    if rows:
        present = set().union(*(r.keys() for r in rows[:1000]))
        for role, name in (("problem", cols.problem), ("reference", cols.reference), ("id", cols.id)):
            if name is not None and name not in present:
                raise ConfigError(
                    f"source column {name!r} (source.columns.{role}) not found; columns are: "
                    f"{', '.join(sorted(present))}. Set it with --set source.columns.{role}=NAME"
                )
    if src.shuffle_seed is not None:
        random.Random(src.shuffle_seed).shuffle(rows)
    prompts: list[Prompt] = []
    seen: set[str] = set()
    label = info["name"] + (f"@{info['revision']}" if info.get("revision") else "")
    for row in rows:
        if src.limit is not None and len(prompts) >= src.limit:
            break
        problem = row.get(cols.problem)
        if not isinstance(problem, str):
            rejected["problem_not_a_string"] += 1
            continue
        if not problem.strip():
            rejected["empty_problem"] += 1
            continue
        reference = _as_reference(row.get(cols.reference)) if cols.reference else None
        pid = str(row[cols.id]) if cols.id and row.get(cols.id) is not None else content_id(problem, reference)
        if pid in seen:
            rejected["duplicate_id"] += 1
            continue
        seen.add(pid)
        used = {cols.problem, cols.reference, cols.id}
        metadata = {k: v for k, v in row.items() if k not in used}
        prompts.append(Prompt(
            prompt_id=pid, index=len(prompts), problem=problem, reference=reference,
            messages=build_messages(cfg.prompt, problem), source=label, metadata=metadata,
        ))
    info.update(split=src.split if not src.builtin else None, rows_read=len(rows), prompts=len(prompts),
                input_rejected=dict(rejected))
    return PromptSet(prompts, info, rejected)
