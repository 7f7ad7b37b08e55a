"""A version of many rows made straight with pyarrow (seconds for a million rows), for the viewer's
paging test: the same schema and layout as a built version, a minimal manifest, no report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from factory.store.schema import ALL_SCHEMA, MESSAGE, VERDICT

REASONS = ["math:wrong_answer", "truncation:truncated", "math:no_answer"]
ROWS_PER_FILE = 250_000


def _table(start: int, rows: int, n: int) -> pa.Table:
    idx = pa.array(range(start, start + rows), pa.int64())
    prompt = pc.divide(idx, n)
    sample = pc.cast(pc.subtract(idx, pc.multiply(prompt, n)), pa.int32())
    pid = pc.binary_join_element_wise("p", pc.utf8_lpad(pc.cast(prompt, pa.string()), 7, "0"), "")
    accepted = pc.equal(pc.bit_wise_and(pc.add(prompt, sample), 3), 0)  # about 1 in 4
    reason_i = pc.bit_wise_and(idx, 3)
    reason = pc.if_else(accepted, pa.scalar(None, pa.string()),
                        pc.choose(pc.cast(pc.min_element_wise(reason_i, 2), pa.int8()),
                                  *[pa.scalar(r) for r in REASONS]))
    tokens = pc.cast(pc.add(pc.bit_wise_and(pc.multiply(idx, 7919), 1023), 10), pa.int32())
    problem = pc.binary_join_element_wise("Problem ", pc.cast(prompt, pa.string()), "")
    text = pc.binary_join_element_wise("reasoning of row ", pc.cast(idx, pa.string()), "")
    # verdicts: [truncation, math]; the failing one carries the reason
    trunc_ok = pc.not_equal(pc.fill_null(reason, ""), REASONS[1])
    math_ok = accepted
    names = pa.array(["truncation", "math"] * rows)
    passed = _interleave(trunc_ok, math_ok)
    vreason = _interleave(pc.if_else(trunc_ok, pa.scalar(None, pa.string()), "truncated"),
                          pc.if_else(math_ok, pa.scalar(None, pa.string()),
                                     pc.if_else(pc.equal(pc.fill_null(reason, ""), REASONS[2]), "no_answer",
                                                "wrong_answer")))
    offsets = pa.array(np.arange(0, 2 * rows + 1, 2, dtype=np.int32))
    verdicts = pa.ListArray.from_arrays(offsets, pa.StructArray.from_arrays([names, passed, vreason],
                                                                            fields=list(VERDICT)))
    content = pc.binary_join_element_wise("<think>\n", text, "\n</think>\n\n\\boxed{1}", "")
    msgs = pa.ListArray.from_arrays(
        offsets,
        pa.StructArray.from_arrays([pa.array(["user", "assistant"] * rows),
                                    _interleave(problem, content)], fields=list(MESSAGE)))
    null_s = pa.nulls(rows, pa.string())
    cols = {
        "messages": msgs, "prompt_id": pid, "sample_index": sample, "problem": problem,
        "reference": pa.array(["1"] * rows), "reasoning": text,
        "completion": pc.binary_join_element_wise(text, "\\boxed{1}", " "), "extracted_answer": pa.array(["1"] * rows),
        "finish_reason": pa.array(["stop"] * rows), "num_tokens": tokens, "source": pa.array(["bench"] * rows),
        "pass_rate": pa.array([0.25] * rows), "prompt_index": prompt, "prompt_tokens": pa.array([20] * rows, pa.int32()),
        "accepted": accepted, "reject_reason": reason, "verdicts": verdicts, "error": null_s, "metadata": null_s,
    }
    return pa.table(cols).cast(ALL_SCHEMA)


def _interleave(a: pa.Array, b: pa.Array) -> pa.Array:
    """a0, b0, a1, b1, ..."""
    a, b = (x.combine_chunks() if isinstance(x, pa.ChunkedArray) else x for x in (a, b))
    n = len(a)
    order = np.column_stack([np.arange(n), np.arange(n) + n]).ravel()
    return pa.concat_arrays([a, b]).take(pa.array(order))


def make_big_version(version_dir: Path, rows: int = 1_000_000, n: int = 4) -> Path:
    """version_dir with `rows` rows of config `all` in files of ROWS_PER_FILE and a manifest."""
    files = []
    for i, start in enumerate(range(0, rows, ROWS_PER_FILE)):
        count = min(ROWS_PER_FILE, rows - start)
        rel = f"data/all/train-{i:05d}-of-{(rows + ROWS_PER_FILE - 1) // ROWS_PER_FILE:05d}.parquet"
        (version_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_table(start, count, n), version_dir / rel, row_group_size=50_000)
        files.append({"path": rel, "config": "all", "split": "train", "rows": count})
    manifest = {"name": version_dir.parent.name, "version": version_dir.name, "files": files,
                "configs": {"all": {"rows": rows}}}
    (version_dir / "manifest.json").write_text(json.dumps(manifest))
    return version_dir
