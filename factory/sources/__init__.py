"""Sources: rows from the builtin set, a local file or a Hub dataset, mapped to Prompts.

The input policy, applied here before any engine starts:
- a row that cannot be used (bytes that are not UTF-8, a malformed line, a missing or empty
  problem, a missing or empty reference when a verifier needs one) is rejected at input time with
  its reason and its line, and never sent to the teacher;
- a run whose input rejects more than `source.max_rejected_fraction` of its rows stops before
  any engine starts (`check_input_policy`), naming the reasons and the first line of each;
- a wrong column name stops the run with the columns that do exist in the message.

Every source also says what it read (`info["content_sha256"]`, or a Hub commit in
`info["revision"]`): a run resumed on changed input must refuse, not mix the two.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from factory.config import Config, ConfigError, SourceConfig
from factory.errors import UserError
from factory.sources.builtin import BUILTIN_SETS
from factory.sources.files import read_file
from factory.sources.hub import read_hub
from factory.sources.prompting import build_messages
from factory.sources.rejects import Rejects
from factory.types import Prompt


@dataclass
class PromptSet:
    prompts: list[Prompt]
    info: dict[str, Any]  # for the manifest and card: kind, name, revision, split, counts, content_sha256
    input_rejected: Counter = field(default_factory=Counter)
    rejects: Rejects | None = None
    rows_examined: int = 0  # rows read or rejected, up to source.limit: the policy's denominator


@dataclass
class RawInput:
    rows: list[dict[str, Any]]
    lines: list[int]  # each row's line (JSONL) or row number: where a reject points the user
    info: dict[str, Any]
    rejects: Rejects


def content_id(problem: str, reference: str | None) -> str:
    return hashlib.sha256(json.dumps([problem, reference]).encode()).hexdigest()[:16]


def rows_sha256(rows: list[dict[str, Any]]) -> str:
    """The identity of generated or downloaded rows: sha256 of their canonical JSON."""
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


def input_identity(info: dict[str, Any]) -> dict[str, Any]:
    """What a run records about its input, and compares on resume."""
    keys = ("kind", "name", "content_sha256", "revision", "subset", "split")
    return {k: info.get(k) for k in keys if info.get(k) is not None}


def read_rows(src: SourceConfig) -> RawInput:
    if src.builtin:
        if src.builtin not in BUILTIN_SETS:
            raise ConfigError(f"source.builtin {src.builtin!r} unknown; builtin sets: {sorted(BUILTIN_SETS)}")
        rows = BUILTIN_SETS[src.builtin]()
        name = f"builtin:{src.builtin}"
        return RawInput(rows, list(range(1, len(rows) + 1)),
                        {"kind": "builtin", "name": name, "content_sha256": rows_sha256(rows)}, Rejects(name))
    if src.path:
        rejects = Rejects(src.path)
        rows, lines, digest = read_file(src.path, rejects)
        return RawInput(rows, lines, {"kind": "file", "name": src.path, "content_sha256": digest}, rejects)
    rows, revision = read_hub(src)
    info: dict[str, Any] = {"kind": "hub", "name": src.dataset, "subset": src.subset, "split": src.split,
                            "revision": revision}
    if not (revision and re.fullmatch(r"[0-9a-f]{40}", revision)):
        # No commit to pin (offline, or a branch name that moves): the rows themselves are the identity.
        info["content_sha256"] = rows_sha256(rows)
    return RawInput(rows, list(range(1, len(rows) + 1)), info, Rejects(f"{src.dataset}[{src.split}] row"))


def _as_reference(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)  # e.g. code tests ({"inputs": [...], "outputs": [...]})


def load_prompts(cfg: Config) -> PromptSet:
    src = cfg.source
    raw = read_rows(src)
    rows, lines, info, rejects = raw.rows, raw.lines, raw.info, raw.rejects
    cols = src.columns
    needs_reference = cfg.verifiers_needing_reference()
    if needs_reference and cols.reference is None:
        raise ConfigError(
            f"verifier {needs_reference[0]} needs a reference answer but source.columns.reference is null; "
            f"name the column with --set source.columns.reference=COLUMN, or remove {needs_reference[0]} from verifiers"
        )
    if rows:
        present = set().union(*(r.keys() for r in rows[:1000]))
        for role, name in (("problem", cols.problem), ("reference", cols.reference), ("id", cols.id)):
            if name is not None and name not in present:
                raise ConfigError(
                    f"source column {name!r} (source.columns.{role}) not found; columns are: "
                    f"{', '.join(sorted(present))}. Set it with --set source.columns.{role}=NAME"
                )
    order = list(range(len(rows)))
    if src.shuffle_seed is not None:
        random.Random(src.shuffle_seed).shuffle(order)
    prompts: list[Prompt] = []
    seen: set[str] = set()
    label = info["name"] + (f"@{info['revision']}" if info.get("revision") else "")
    examined = sum(rejects.counts.values())  # rows that could not even be read
    for k in order:
        row, line = rows[k], lines[k]
        if src.limit is not None and len(prompts) >= src.limit:
            break
        examined += 1
        problem = row.get(cols.problem)
        if problem is None:
            rejects.add("missing_problem", line)
            continue
        if not isinstance(problem, str):
            rejects.add("problem_not_a_string", line)
            continue
        if not problem.strip():
            rejects.add("empty_problem", line)
            continue
        reference = _as_reference(row.get(cols.reference)) if cols.reference else None
        if needs_reference and (reference is None or not reference.strip()):
            rejects.add("missing_reference", line)
            continue
        pid = str(row[cols.id]) if cols.id and row.get(cols.id) is not None else content_id(problem, reference)
        if pid in seen:
            rejects.add("duplicate_id", line)
            continue
        seen.add(pid)
        used = {cols.problem, cols.reference, cols.id}
        metadata = {k: v for k, v in row.items() if k not in used}
        prompts.append(Prompt(
            prompt_id=pid, index=len(prompts), problem=problem, reference=reference,
            messages=build_messages(cfg.prompt, problem), source=label, metadata=metadata,
        ))
    info.update(split=src.split if not src.builtin else None, rows_read=len(rows), prompts=len(prompts),
                input_rejected=dict(rejects.counts))
    return PromptSet(prompts, info, rejects.counts, rejects, examined)


def check_input_policy(prompt_set: PromptSet, src: SourceConfig) -> None:
    """Stop before any engine starts when the input rejects more than source.max_rejected_fraction."""
    rejects = prompt_set.rejects
    if rejects is None or not prompt_set.rows_examined:
        return
    bad = rejects.harmful()
    fraction = bad / prompt_set.rows_examined
    if fraction <= src.max_rejected_fraction:
        return
    hint = ""
    if rejects.counts.get("not_utf8"):
        hint = f" Re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 {rejects.label} > fixed.jsonl`)."
    elif rejects.counts.get("missing_reference"):
        hint = " Check source.columns.reference, or fill in the missing answers."
    raise UserError(
        f"input {rejects.label}: {bad} of {prompt_set.rows_examined} rows rejected ({fraction:.1%}), more than "
        f"source.max_rejected_fraction={src.max_rejected_fraction:g}: {rejects.describe()}. No engine was "
        f"started.{hint} To run on the rows that remain, raise the threshold, e.g. "
        f"--set source.max_rejected_fraction={min(1.0, round(fraction + 0.005, 2)):g}"
    )
