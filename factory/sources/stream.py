"""Prompts streamed from the source: read a chunk at a time, as often as a run needs them.

    stream = PromptStream(cfg)
    summary = stream.scan()    # one pass: identity, rejects and counts; keeps no row
    check_input_policy(summary, cfg.source)
    for prompt in stream: ...  # a fresh read; the same prompts in the same order every time

The driver holds the prompts in flight, not the set. What still grows with the input:
- during the scan only, the ids seen so far, to reject a repeated id (`duplicate_id`): 8-byte
  digests in a set, ~95 bytes a prompt (two ids share a digest at 1M ids with odds ~3e-8); the
  scan notes the positions of the repeats, and every later pass skips them without the set;
- with `source.shuffle_seed`: the readable rows are spilled (pickled) to a temporary file on
  disk, and the driver keeps each row's offset in it and the shuffled order (8 bytes each, 16
  bytes a row). Shuffling a list of row numbers is the only way to keep today's order exactly
  (`random.Random(seed).shuffle(range(rows))`); the list is 36 bytes a row while it is shuffled.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import tempfile
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import IO, Any

from factory.config import Config, ConfigError
from factory.sources.builtin import BUILTIN_SETS
from factory.sources.files import file_digest, file_rows
from factory.sources.hub import hub_rows, open_hub
from factory.sources.prompting import build_messages
from factory.sources.rejects import Rejects
from factory.types import Prompt

Row = tuple[int, dict[str, Any]]  # (line or row number, row)
_COLUMN_CHECK_ROWS = 1000  # the columns a row may have are taken from this many first rows


@dataclass
class PromptSet:
    prompts: list[Prompt]  # empty after a scan: the stream holds the prompts, not the set
    info: dict[str, Any]  # for the manifest and card: kind, name, revision, split, counts, content_sha256
    input_rejected: Counter = field(default_factory=Counter)  # reason -> rows
    rejects: Rejects | None = None
    rows_examined: int = 0  # rows read or rejected, up to source.limit: the policy's denominator


def content_id(problem: str, reference: str | None) -> str:
    return hashlib.sha256(json.dumps([problem, reference]).encode()).hexdigest()[:16]


def _row_bytes(r: dict[str, Any]) -> bytes:
    return json.dumps(r, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode() + b"\n"


def rows_sha256(rows: Any) -> str:
    """The identity of generated or downloaded rows: sha256 of their canonical JSON."""
    h = hashlib.sha256()
    for r in rows:
        h.update(_row_bytes(r))
    return h.hexdigest()


def as_reference(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)  # e.g. code tests ({"inputs": [...], "outputs": [...]})


class _Checker:
    """The per-row input policy: a usable problem, a reference where needed, an id not seen before."""

    def __init__(self, cfg: Config, rejects: Rejects, repeats: set[int] | None = None):
        self.cols, self.rejects = cfg.source.columns, rejects
        self.needs_reference = bool(cfg.verifiers_needing_reference())
        # The scan finds repeated ids with a set of digests and notes the repeats' positions; a
        # later pass over the same rows skips those positions and needs no set.
        self.seen: set[bytes] = set()
        self.repeats: set[int] = set() if repeats is None else repeats
        self.known = repeats is not None
        self.checked = 0  # rows that reached the checks
        self.kept = 0

    def check(self, line: int, row: dict[str, Any]) -> tuple[str, str | None, str] | None:
        """(problem, reference, prompt_id) of a usable row; None (and a reject) otherwise."""
        self.checked += 1
        cols = self.cols
        problem = row.get(cols.problem)
        if problem is None:
            return self._reject("missing_problem", line)
        if not isinstance(problem, str):
            return self._reject("problem_not_a_string", line)
        if not problem.strip():
            return self._reject("empty_problem", line)
        reference = as_reference(row.get(cols.reference)) if cols.reference else None
        if self.needs_reference and (reference is None or not reference.strip()):
            return self._reject("missing_reference", line)
        pid = str(row[cols.id]) if cols.id and row.get(cols.id) is not None else content_id(problem, reference)
        if self.known:
            if self.checked in self.repeats:
                return self._reject("duplicate_id", line)
        else:
            key = hashlib.blake2b(pid.encode(), digest_size=8).digest()
            if key in self.seen:
                self.repeats.add(self.checked)
                return self._reject("duplicate_id", line)
            self.seen.add(key)
        self.kept += 1
        return problem, reference, pid

    def _reject(self, reason: str, line: int) -> None:
        self.rejects.add(reason, line)
        return None


class PromptStream:
    """The prompts of `cfg.source`, in the order a run uses them; `scan()` first, then iterate."""

    def __init__(self, cfg: Config):
        self.cfg, self.src = cfg, cfg.source
        self.info: dict[str, Any] = {}
        self.label = ""
        self._ds: Any = None  # the Hub split (Arrow on disk, memory-mapped)
        self._builtin: list[dict[str, Any]] | None = None
        self._spill: IO[bytes] | None = None  # shuffled runs: the readable rows, pickled
        self._offsets = array("q")
        self._order = array("q")
        self._repeats: set[int] = set()  # positions (rows checked, in order) of repeated ids
        self.summary: PromptSet | None = None

    # ------------------------------------------------------------------ the input
    def _open(self) -> Rejects:
        src = self.src
        if src.builtin:
            if src.builtin not in BUILTIN_SETS:
                raise ConfigError(f"source.builtin {src.builtin!r} unknown; builtin sets: {sorted(BUILTIN_SETS)}")
            self._builtin = BUILTIN_SETS[src.builtin]()  # a few hundred rows, made here
            name = f"builtin:{src.builtin}"
            self.info = {"kind": "builtin", "name": name, "content_sha256": rows_sha256(self._builtin)}
            rejects = Rejects(name)
        elif src.path:
            self.info = {"kind": "file", "name": src.path, "content_sha256": file_digest(src.path)}
            rejects = Rejects(src.path)
        else:
            self._ds, revision = open_hub(src)
            self.info = {"kind": "hub", "name": src.dataset, "subset": src.subset, "split": src.split,
                         "revision": revision}
            rejects = Rejects(f"{src.dataset}[{src.split}] row")
        rev = self.info.get("revision")
        self.label = self.info["name"] + (f"@{rev}" if rev else "")
        needs = self.cfg.verifiers_needing_reference()
        if needs and src.columns.reference is None:
            raise ConfigError(
                f"verifier {needs[0]} needs a reference answer but source.columns.reference is null; "
                f"name the column with --set source.columns.reference=COLUMN, or remove {needs[0]} from verifiers"
            )
        return rejects

    def _hub_unpinned(self) -> bool:
        """No commit to pin (offline, or a branch name that moves): the rows themselves are the identity."""
        rev = self.info.get("revision")
        return self.info["kind"] == "hub" and not (rev and len(rev) == 40 and all(c in "0123456789abcdef" for c in rev))

    def _raw(self, rejects: Rejects) -> Iterator[Row]:
        """Readable rows in input order, a chunk at a time; unreadable ones go to `rejects`."""
        if self._builtin is not None:
            return enumerate(self._builtin, 1)
        if self.src.path:
            return file_rows(self.src.path, rejects)
        return hub_rows(self._ds)

    def _ordered(self, rejects: Rejects) -> Iterator[Row]:
        if self._spill is None:
            yield from self._raw(rejects)
            return
        spill, offsets = self._spill, self._offsets
        for k in self._order:
            spill.seek(offsets[k])
            yield pickle.load(spill)

    def _check_columns(self, head: list[Row]) -> None:
        if not head:
            return
        present = set().union(*(r.keys() for _, r in head))
        cols = self.src.columns
        for role, name in (("problem", cols.problem), ("reference", cols.reference), ("id", cols.id)):
            if name is not None and name not in present:
                raise ConfigError(
                    f"source column {name!r} (source.columns.{role}) not found; columns are: "
                    f"{', '.join(sorted(present))}. Set it with --set source.columns.{role}=NAME"
                )

    # ------------------------------------------------------------------ passes
    def scan(self) -> PromptSet:
        """One pass over the whole input: its identity, rejects and counts. Builds no prompt."""
        self.close()
        rejects = self._open()
        sha = hashlib.sha256() if self._hub_unpinned() else None
        read = 0
        head: list[Row] = []
        raw = self._raw(rejects)
        if self.src.shuffle_seed is not None:
            self._spill = tempfile.TemporaryFile(prefix="factory-rows-")
            for item in raw:
                self._offsets.append(self._spill.tell())
                pickle.dump(item, self._spill, protocol=pickle.HIGHEST_PROTOCOL)
                if sha is not None:
                    sha.update(_row_bytes(item[1]))
                if len(head) < _COLUMN_CHECK_ROWS:
                    head.append(item)
            read = len(self._offsets)
            order = list(range(read))
            random.Random(self.src.shuffle_seed).shuffle(order)
            self._order = array("q", order)
            del order
            self._check_columns(head)
            rows: Iterator[Row] = self._ordered(Rejects(self.label))
        else:
            head = list(islice(raw, _COLUMN_CHECK_ROWS))
            self._check_columns(head)
            rows = chain(head, raw)
        del head
        unreadable = sum(rejects.counts.values())  # counted while spilling (shuffled runs)
        checker = _Checker(self.cfg, rejects)
        limit = self.src.limit
        for line, row in rows:
            if self._spill is None:
                read += 1
                if sha is not None:
                    sha.update(_row_bytes(row))
            if limit is None or checker.kept < limit:
                checker.check(line, row)
            elif self._spill is not None:
                break  # the shuffled rows were all read and counted while spilling
        if self._spill is None:
            unreadable = sum(rejects.counts.values()) - (checker.checked - checker.kept)
        self._repeats = checker.repeats
        del checker.seen
        if sha is not None:
            self.info["content_sha256"] = sha.hexdigest()
        self.info.update(split=self.src.split if not self.src.builtin else None, rows_read=read,
                         prompts=checker.kept, input_rejected=dict(rejects.counts))
        self.summary = PromptSet([], self.info, rejects.counts, rejects, unreadable + checker.checked)
        return self.summary

    def __iter__(self) -> Iterator[Prompt]:
        """Every prompt, built as it is read; the run's `index` is its position in the input's prompts."""
        if self.summary is None:
            self.scan()
        checker = _Checker(self.cfg, Rejects(self.label), self._repeats)  # the scan counted the rejects
        limit, cfg, used = self.src.limit, self.cfg, {self.src.columns.problem, self.src.columns.reference,
                                                       self.src.columns.id}
        for line, row in self._ordered(Rejects(self.label)):
            if limit is not None and checker.kept >= limit:
                return
            fields = checker.check(line, row)
            if fields is None:
                continue
            problem, reference, pid = fields
            yield Prompt(prompt_id=pid, index=checker.kept - 1, problem=problem, reference=reference,
                         messages=build_messages(cfg.prompt, problem), source=self.label,
                         metadata={k: v for k, v in row.items() if k not in used})

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
        self._spill, self._offsets, self._order, self.summary = None, array("q"), array("q"), None
        self._repeats = set()

    def __enter__(self) -> "PromptStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
