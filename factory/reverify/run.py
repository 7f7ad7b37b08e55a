"""`factory verify`'s work: input rows -> traces -> the runner's VerifyStage -> one Parquet file.

Memory stays bounded: rows are read, verified and written in batches. pass_rate (accepted /
samples of the row's prompt) is known only once every row is in, so a first pass writes a temp
file and keeps per-prompt counts; a second pass fills pass_rate. The output appears in one
rename, never half-written, and never over the input or inside a version dir.

A `reasoning` value that does not occur in the completion is reasoning the engine split off
(vLLM's reasoning parser): it is handed back as the completion's reasoning_content, so the
think-format check and the answer split see what they saw at generation time.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from factory.config import Config, ConfigError
from factory.errors import UserError
from factory.reverify.agreement import EXPECTED_COLUMN, Agreement
from factory.reverify.inputs import BATCH_ROWS, Input, is_version
from factory.reverify.rows import problem_of, reference_of, row_trace, split_messages
from factory.sources import content_id
from factory.store.manifest import jsonable, now_utc
from factory.store.schema import ALL_SCHEMA, count_doubled
from factory.types import Trace
from factory.verifiers.parsing import EXTRACTION_MODES
from factory.verifiers.stage import VerifyStage

log = logging.getLogger(__name__)

PROGRESS_MIN_ROWS = 1000  # a progress bar only for inputs larger than this
# Written by verify, replacing an input column of the same name.
VERDICT_COLUMNS = ("reasoning", "extracted_answer", "accepted", "reject_reason", "verdicts", "pass_rate")
# Added when the input lacks them (pass_rate is per prompt: rows need a prompt key).
ID_COLUMNS = ("prompt_id", "sample_index")
_TYPES = {f.name: f.type for f in ALL_SCHEMA}
META_KEY = b"factory.verify"


# ----------------------------------------------------------------------------- output


@dataclass
class VerifyResult:
    out: Path
    input: Path
    rows: int = 0
    accepted: int = 0
    rejected_by_reason: Counter = field(default_factory=Counter)
    verifiers: dict[str, dict[str, int]] = field(default_factory=dict)  # name -> passed/failed/unknown
    advisory: list[str] = field(default_factory=list)
    # Advisory verifiers that passed a rejected trace (an LLM judge disagreeing with math-verify).
    advisory_passed_on_rejected: Counter = field(default_factory=Counter)
    # Rows whose assistant turn holds its text twice (<think>\nX\n</think>\n\nX), as versions
    # made before that was fixed do: a model trained on them learns to repeat itself.
    doubled: int = 0
    described: list[dict[str, Any]] = field(default_factory=list)
    # Rows with an `expected` column (a user's own labels): how often `accepted` agrees with it.
    agreement: Agreement | None = None

    @property
    def rejected(self) -> int:
        return self.rows - self.accepted

    def as_dict(self) -> dict[str, Any]:
        return {"input": str(self.input), "out": str(self.out), "rows": self.rows, "accepted": self.accepted,
                "rejected": self.rejected, "rejected_by_reason": dict(self.rejected_by_reason.most_common()),
                "verifiers": self.verifiers, "advisory": self.advisory,
                "advisory_passed_on_rejected": dict(self.advisory_passed_on_rejected), "doubled": self.doubled,
                **({"agreement": self.agreement.as_dict()} if self.agreement is not None else {})}


def default_output(inp: Input) -> Path:
    if inp.kind == "version":
        return inp.path.parent / f"{inp.path.name}.verified.parquet"
    return inp.path.with_name(f"{inp.path.stem}.verified.parquet")


def _inside_version(path: Path) -> Path | None:
    for d in [path, *path.parents]:
        if is_version(d):
            return d
    return None


def check_output(inp: Input, out: Path, overwrite: bool) -> Path:
    out = Path(out).expanduser().absolute()
    sources = {inp.path.resolve(), *(f.resolve() for f in inp.files)}
    if out.resolve() in sources:
        raise UserError(f"--out {out} is the input; verify never rewrites its input: choose another --out")
    version = _inside_version(out.parent)
    if version is not None or is_version(out):
        raise UserError(f"--out {out} lies inside version {version or out}; versions are immutable: "
                        "write the result elsewhere")
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name ending in .parquet")
    if out.exists() and not overwrite:
        raise UserError(f"{out} exists; pass --overwrite to replace it, or choose another --out")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: directory {out.parent} does not exist")
    return out


def output_schema(in_schema: pa.Schema) -> pa.Schema:
    """Input columns in their order (verdict columns retyped in place), then the new ones."""
    fields = [pa.field(f.name, _TYPES[f.name]) if f.name in VERDICT_COLUMNS else f for f in in_schema]
    have = set(in_schema.names)
    fields += [pa.field(n, _TYPES[n]) for n in (*ID_COLUMNS, *VERDICT_COLUMNS) if n not in have]
    # `datasets` and pandas describe the input's columns in these keys; stale now, so dropped.
    meta = {k: v for k, v in (in_schema.metadata or {}).items() if k not in (b"huggingface", b"pandas")}
    return pa.schema(fields, metadata=meta or None)


class _Counts:
    """Per-prompt accepted/sample counts for pass_rate: one entry per prompt, not per row."""

    def __init__(self) -> None:
        self.by_prompt: dict[str, list[int]] = {}

    def add(self, table: pa.Table) -> None:
        t = pa.table({"k": pc.cast(table["prompt_id"], pa.string()),
                      "a": pc.cast(pc.fill_null(table["accepted"], False), pa.int64())})
        g = t.group_by("k").aggregate([("a", "sum"), ("a", "count")])
        for k, a, n in zip(g["k"].to_pylist(), g["a_sum"].to_pylist(), g["a_count"].to_pylist(), strict=True):
            if k is None:
                continue
            slot = self.by_prompt.setdefault(k, [0, 0])
            slot[0] += a
            slot[1] += n

    def rates(self, prompt_ids: pa.ChunkedArray | pa.Array) -> pa.Array:
        if not hasattr(self, "_keys"):
            self._keys = pa.array(list(self.by_prompt), pa.string())
            self._rates = pa.array([a / n for a, n in self.by_prompt.values()], pa.float64())
        idx = pc.index_in(pc.cast(prompt_ids, pa.string()), value_set=self._keys)
        return pc.take(self._rates, idx)


class _Ids:
    """prompt_id and sample_index for inputs that lack them: a content hash of problem and
    reference (as the sources make it), and the order of appearance within the prompt."""

    def __init__(self, has_pid: bool, has_sample: bool):
        self.has_pid, self.has_sample = has_pid, has_sample
        self.seen: Counter = Counter()

    def __call__(self, row: dict[str, Any]) -> tuple[str | None, int | None]:
        pid = row.get("prompt_id") if self.has_pid else None
        if not self.has_pid:
            problem = problem_of(row, split_messages(row.get("messages"))[0])
            pid = content_id(problem, reference_of(row)) if problem is not None else None
        sample = row.get("sample_index") if self.has_sample else None
        if sample is None and pid is not None:
            sample = self.seen[str(pid)]
        if pid is not None:
            self.seen[str(pid)] += 1
        return (None if pid is None else str(pid)), (None if sample is None else int(sample))


def _input_verdict(reason: str) -> dict[str, Any]:
    return {"reasoning": None, "extracted_answer": None, "accepted": False, "reject_reason": f"input:{reason}",
            "verdicts": [{"name": "input", "passed": False, "reason": reason}]}


def _verify_batch(stage: Any, table: pa.Table, bad: dict[int, str], ids: _Ids, extraction: str,
                  index_base: int, result: VerifyResult) -> dict[str, list[Any]]:
    """The new column values for one batch of input rows."""
    rows = table.to_pylist()
    out: list[dict[str, Any] | None] = [None] * len(rows)
    keys = [ids(r) for r in rows]
    traces: list[Trace] = []
    where: list[int] = []
    for i, row in enumerate(rows):
        reason = bad.get(i)
        if reason is None:
            pid, sample = keys[i]
            try:
                t = row_trace(row, pid or "", sample or 0, index_base + i, extraction)
            except (TypeError, ValueError, AttributeError) as e:  # a value of an unexpected shape
                log.warning("row %d: cannot be read (%s)", index_base + i, e)
                t = "malformed_row"
            if isinstance(t, str):
                reason = t
            else:
                traces.append(t)
                where.append(i)
        if reason is not None:
            out[i] = _input_verdict(reason)
    for i, r in zip(where, stage.rows_for_traces(traces) if traces else [], strict=True):
        out[i] = r
    cols: dict[str, list[Any]] = {n: [] for n in (*ID_COLUMNS, *VERDICT_COLUMNS)}
    for (pid, sample), r, row in zip(keys, out, rows, strict=True):
        assert r is not None
        if result.agreement is not None:
            result.agreement.add_row(row.get(EXPECTED_COLUMN), r, stage.advisory)
        cols["prompt_id"].append(pid)
        cols["sample_index"].append(sample)
        for n in ("reasoning", "extracted_answer", "accepted", "reject_reason", "verdicts"):
            cols[n].append(r[n])
        cols["pass_rate"].append(None)  # second pass
        _count(result, r, stage.advisory)
    return cols


def _count(result: VerifyResult, r: dict[str, Any], advisory: frozenset[str]) -> None:
    result.rows += 1
    if r["accepted"]:
        result.accepted += 1
    else:
        result.rejected_by_reason[r["reject_reason"] or "unknown"] += 1
    for v in r["verdicts"]:
        if v["name"] == "input":
            continue
        slot = {True: "passed", False: "failed", None: "unknown"}[v["passed"]]
        result.verifiers.setdefault(v["name"], {"passed": 0, "failed": 0, "unknown": 0})[slot] += 1
        if v["name"] in advisory and v["passed"] is True and not r["accepted"]:
            result.advisory_passed_on_rejected[v["name"]] += 1


def _assemble(table: pa.Table, new: dict[str, list[Any]], schema: pa.Schema) -> pa.Table:
    have = set(table.column_names)
    arrays = []
    for f in schema:
        if f.name in VERDICT_COLUMNS or (f.name in ID_COLUMNS and f.name not in have):
            arrays.append(pa.array(new[f.name], f.type))
        else:
            arrays.append(table[f.name])
    return pa.table(arrays, schema=schema)


def _progress(total: int, enabled: bool | None) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if enabled is False or (enabled is None and total <= PROGRESS_MIN_ROWS):
        return None
    return Progress(TextColumn("[bold]verify"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                    TimeElapsedColumn(), console=Console(stderr=True))


def reverify(inp: Input, cfg: Config, out: str | Path | None = None, *, workers: int | None = None,
             batch_rows: int = BATCH_ROWS, progress: bool | None = None, overwrite: bool = False,
             extraction: str | None = None) -> VerifyResult:
    """Verify every row of `inp` with `cfg.verifiers`; write the result to `out` (Parquet).

    `extraction` (default: the math verifier's) is how final answers are taken from completions;
    it matters without math too (nonempty_answer, llm_judge read the extracted answer)."""
    out_path = check_output(inp, Path(out) if out is not None else default_output(inp), overwrite)
    names = set(inp.schema.names)
    if not ({"problem", "messages"} & names) or not ({"completion", "messages"} & names):
        raise UserError(f"{inp.path} needs columns `problem` and `completion` (or `messages`); "
                        f"columns are: {', '.join(inp.schema.names) or '(none)'}")
    needs_ref = {s.name for s in cfg.verifiers} & {"math", "code", "llm_judge"}
    if needs_ref and not ({"reference", "tests"} & names):
        raise UserError(f"{inp.path}: verifiers {sorted(needs_ref)} need a `reference` (math) or `tests` (code) "
                        f"column; columns are: {', '.join(inp.schema.names)}")
    schema = output_schema(inp.schema)
    if extraction is not None and extraction not in EXTRACTION_MODES:
        raise ConfigError(f"extraction {extraction!r} unknown; modes are: {', '.join(EXTRACTION_MODES)}")
    extraction = extraction or cfg.answer_extraction()
    stage = VerifyStage(cfg, workers or os.cpu_count() or 1)
    result = VerifyResult(out_path, inp.path, advisory=sorted(stage.advisory), described=stage.describe())
    result.verifiers = {v.name: {"passed": 0, "failed": 0, "unknown": 0} for v in stage.verifiers}
    if EXPECTED_COLUMN in names:
        result.agreement = Agreement()
    counts = _Counts()
    ids = _Ids("prompt_id" in names, "sample_index" in names)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp1 = out_path.with_name(f".{out_path.name}.pass1-{tag}")
    tmp2 = out_path.with_name(f".{out_path.name}.tmp-{tag}")
    bar = _progress(inp.num_rows, progress)
    try:
        if bar is not None:
            bar.start()
            task = bar.add_task("verify", total=inp.num_rows)
        done = 0
        with pq.ParquetWriter(tmp1, schema, compression="zstd") as w:
            for table, bad in inp.batches(batch_rows):
                new = _verify_batch(stage, table, bad, ids, extraction, done, result)
                if "messages" in names:
                    result.doubled += count_doubled(table.column("messages").to_pylist())
                t = _assemble(table, new, schema)
                counts.add(t)
                w.write_table(t)
                done += table.num_rows
                if bar is not None:
                    bar.update(task, completed=done)
        meta = {"input": str(inp.path), "input_kind": inp.kind, "created_at": now_utc(),
                "extraction": extraction, "verifiers": result.described, "counts": result.as_dict()}
        final = schema.with_metadata({**(schema.metadata or {}), META_KEY: json.dumps(jsonable(meta)).encode()})
        with pq.ParquetWriter(tmp2, final, compression="zstd") as w:
            for b in pq.ParquetFile(tmp1).iter_batches(batch_size=batch_rows):
                t = pa.Table.from_batches([b], schema=schema)
                t = t.set_column(schema.get_field_index("pass_rate"), schema.field("pass_rate"),
                                 counts.rates(t["prompt_id"]))
                w.write_table(t.replace_schema_metadata(final.metadata))
        os.replace(tmp2, out_path)
    finally:
        if bar is not None:
            bar.stop()
        stage.close()
        for t in (tmp1, tmp2):
            t.unlink(missing_ok=True)
    return result


def read_metadata(path: str | Path) -> dict[str, Any]:
    """What `factory verify` recorded in an output file: input, verifiers, counts."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[META_KEY]) if META_KEY in meta else {}
