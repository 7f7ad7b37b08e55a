"""Prompts streamed from the source (issue 17): the same prompts as reading the whole input at
once, read a chunk at a time, and pulled by the run only as its shards are committed."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import factory.sources.files as files_mod
from factory.config import load_config
from factory.runner import driver
from factory.sources import PromptStream, check_input_policy, content_id, load_prompts
from factory.store.parts import PartWriter

N = 1000  # rows; the chunk is set to 64 below, so every file spans many chunks


def _rows() -> list[dict]:
    rows = []
    for k in range(N):
        row = {"id": f"q{k % 990}", "problem": f"What is {k} + {k + 1}?", "answer": str(2 * k + 1), "tag": k % 3}
        if k % 97 == 5:
            row["problem"] = "  "  # empty_problem
        if k % 101 == 7:
            row["answer"] = None  # missing_reference
        rows.append(row)
    return rows


def _expected(rows: list[dict], order: list[int], limit: int | None = None) -> list[tuple[str, str, str | None, int]]:
    """The prompts as the input policy defines them, computed here without the sources code."""
    out, seen = [], set()
    for k in order:
        r = rows[k]
        if limit is not None and len(out) >= limit:
            break
        if not r["problem"].strip() or r["answer"] is None or r["id"] in seen:
            continue
        seen.add(r["id"])
        out.append((r["id"], r["problem"], r["answer"], len(out)))
    return out


def _cfg(path: Path, **source: object):
    return load_config(None, data={"source": {"path": str(path), "columns": {"id": "id"},
                                              "max_rejected_fraction": 0.2, **source}})


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files_mod, "CHUNK_ROWS", 64)


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, Path]:
    rows = _rows()
    jsonl = tmp_path / "p.jsonl"
    with jsonl.open("w") as f:
        for k, r in enumerate(rows):
            f.write(json.dumps(r) + "\n")
            if k == 500:
                f.write("{not json\n")  # an unreadable line: rejected, counted, not a row
    parquet = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet, row_group_size=100)
    return {"jsonl": jsonl, "parquet": parquet}


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
@pytest.mark.parametrize("limit,seed", [(None, None), (300, None), (None, 7), (250, 3)])
def test_streamed_prompts_equal_the_whole_input(inputs: dict[str, Path], kind: str, limit: int | None,
                                                seed: int | None) -> None:
    rows = _rows()
    order = list(range(N))
    if seed is not None:
        random.Random(seed).shuffle(order)
    ps = load_prompts(_cfg(inputs[kind], limit=limit, shuffle_seed=seed))
    got = [(p.prompt_id, p.problem, p.reference, p.index) for p in ps.prompts]
    assert got == _expected(rows, order, limit)
    assert all(p.metadata == {"tag": int(p.problem.split()[2]) % 3} for p in ps.prompts)
    counts = ps.input_rejected
    assert counts["empty_problem"] > 0 and counts["missing_reference"] > 0
    assert (counts["duplicate_id"] > 0) == (limit is None)  # ids repeat only past row 990
    assert counts.get("malformed_json_line", 0) == (1 if kind == "jsonl" else 0)
    assert ps.info["prompts"] == len(got) and ps.info["rows_read"] == N
    # Every row read or rejected up to the limit: the policy's denominator.
    assert ps.rows_examined == sum(counts.values()) + len(got)


def test_scan_keeps_no_row_and_the_stream_reads_a_chunk_at_a_time(inputs: dict[str, Path],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    read = {"rows": 0}
    real = files_mod.file_rows

    def counted(*a: object, **k: object):
        for item in real(*a, **k):  # type: ignore[arg-type]
            read["rows"] += 1
            yield item

    monkeypatch.setattr("factory.sources.stream.file_rows", counted)
    stream = PromptStream(_cfg(inputs["parquet"]))
    summary = stream.scan()
    assert summary.prompts == [] and summary.info["prompts"] > 900
    check_input_policy(summary, stream.src)
    read["rows"] = 0
    it = iter(stream)
    first = [next(it) for _ in range(10)]
    assert [p.index for p in first] == list(range(10))
    assert read["rows"] <= 64 + 10  # one chunk, not the file
    assert content_id("a", "b") == content_id("a", "b")


def test_the_run_pulls_prompts_only_as_shards_are_committed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.jsonl"
    with path.open("w") as f:
        for k in range(400):
            f.write(json.dumps({"problem": f"What is {k} + 1?", "answer": str(k + 1)}) + "\n")
    cfg = load_config(None, data={
        "source": {"path": str(path)},
        "prefilter": None,
        "teacher": {"engine": "scripted", "max_num_seqs": 4, "engine_kwargs": {"answers": {}}},
        "sampling": {"n": 1, "max_tokens": 20},
        "verifiers": [{"name": "truncation"}],
        "run": {"shard_size": 5, "progress": False, "backend": "local", "verify_workers": 1},
        "output": {"store": str(tmp_path / "store"), "name": "t"},
    })
    committed: list[int] = []
    in_flight: list[int] = []  # shards pulled and not yet committed, each time one is pulled
    real_add, real_cut = PartWriter.add, driver.cut_shards

    def add(self: PartWriter, shard_id: int, rows: object):
        committed.append(shard_id)
        return real_add(self, shard_id, rows)  # type: ignore[arg-type]

    def cut(*a: object, **k: object):
        for n, shard in enumerate(real_cut(*a, **k), 1):  # type: ignore[arg-type]
            in_flight.append(n - len(committed))
            yield shard

    monkeypatch.setattr(PartWriter, "add", add)
    monkeypatch.setattr(driver, "cut_shards", cut)
    result = driver.generate(cfg)
    assert sorted(committed) == list(range(80))
    assert result.manifest["run_stats"]["prompts"] == 400
    # 80 shards; the replica takes 8 requests (max_num_seqs 4 x inflight_factor 2), so the source
    # is read a few shards ahead of the commits, never the whole set up front.
    assert len(in_flight) == 80 and max(in_flight) <= 12, in_flight
