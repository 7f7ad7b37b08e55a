"""The local store: committed parts, immutable versions, the dataset lock. Real pyarrow and datasets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.store import card as card_mod
from factory.store import version as version_mod
from factory.store.lock import DatasetLocked, dataset_lock
from factory.store.parts import RunDir
from factory.store.schema import ALL_SCHEMA, DEFAULT_SCHEMA, PART_SCHEMA, trace_row
from factory.store.version import (
    VersionError,
    build_version,
    clean_stale_builds,
    latest_version,
    list_versions,
    load_manifest,
    read_version_table,
    verify_files,
)
from factory.types import Completion, Prompt, Trace, Verdict

REPO = Path(__file__).resolve().parents[2]


def make_rows(prompts: dict[str, int], n: int = 2, start_index: int = 0,
              accept: set[tuple[str, int]] | None = None, tag: str = "") -> list[dict]:
    """n samples for each prompt_id -> prompt_index; (pid, s) in `accept` pass, others fail."""
    rows = []
    for pid, index in prompts.items():
        p = Prompt(pid, index + start_index, f"problem {pid}", "42",
                   [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"problem {pid}"}],
                   "test:unit", {"level": 3})
        for s in range(n):
            ok = accept is None and s == 0 or accept is not None and (pid, s) in accept
            answer = "42" if ok else "41"
            c = Completion(pid, s, f"<think>work {pid} {s}{tag}</think>\n\\boxed{{{answer}}}", "stop",
                           prompt_tokens=12, num_tokens=100 + 10 * s)
            t = Trace(p, c, f"work {pid} {s}{tag}", f"\\boxed{{{answer}}}", True, True, answer)
            verdicts = [Verdict("format", True), Verdict("math", ok, None if ok else "wrong_answer")]
            rows.append(trace_row(t, verdicts))
    return rows


def table_of(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=PART_SCHEMA)


INFO = {
    "config": {"output": {"store": "factory-store", "name": "ds"}},
    "fingerprint": "abc123def456",
    "seed": 0,
    "teacher": {"model": "tiny-teacher", "revision": "r1", "engine": "vllm"},
    "verifiers": [{"name": "format", "version": "1", "params": {}},
                  {"name": "math", "version": "1", "params": {}}],
    "source": {"kind": "builtin", "name": "arithmetic", "revision": None, "split": "train", "prompts": 3},
    "stats": {"prompts": 3, "prefiltered": {}, "generations": 6, "wall_s": 1.5},
    "run_id": "run-1",
    "sampling": {"n": 2, "temperature": 0.6},
}


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf-cache"


def load(vdir: Path, config: str | None, cache: Path):
    import datasets

    args = [str(vdir)] + ([config] if config else [])
    return datasets.load_dataset(*args, split="train", cache_dir=str(cache))


# ----------------------------------------------------------------------------- parts


def test_commit_part_keys_shards_and_replace(tmp_path):
    rd = RunDir.of(tmp_path / "ds", "run-1")
    assert rd.path == tmp_path / "ds" / ".runs" / "run-1"
    assert rd.committed_shards() == set() and rd.committed_keys() == set()
    assert rd.read_table().num_rows == 0 and rd.read_table().schema == PART_SCHEMA

    p = rd.commit_part(12, make_rows({"a": 0, "b": 1}))
    assert p.name == "part-00000001.parquet"
    rd.commit_part(3, make_rows({"c": 2}))
    assert rd.committed_shards() == {3, 12}
    assert rd.committed_keys() == {("a", 0), ("a", 1), ("b", 0), ("b", 1), ("c", 0), ("c", 1)}
    t = rd.read_table()
    assert t.schema == PART_SCHEMA
    assert t["prompt_id"].to_pylist() == ["c", "c", "a", "a", "b", "b"]  # shard order
    assert pq.ParquetFile(p).metadata.row_group(0).column(0).compression == "ZSTD"

    # A shard is committed once: committing shard 12 again is refused, and nothing changes.
    with pytest.raises(ValueError, match="committed already"):
        rd.commit_part(12, make_rows({"a": 0}, n=3, tag=" retry"))
    assert rd.read_table().num_rows == 6 and len(rd.part_files()) == 2

    # An empty shard is still committed, so resume does not redo it.
    rd.commit_part(7, [])
    assert 7 in rd.committed_shards() and rd.read_table().num_rows == 6

    # A fresh RunDir over the same path sees the same committed state (resume reads the disk).
    again = RunDir.of(tmp_path / "ds", "run-1").create()
    assert again.committed_shards() == {3, 7, 12} and len(again.committed_keys()) == 6
    again.remove()
    assert not rd.path.exists() and rd.committed_shards() == set()


def test_commit_part_rejects_bad_rows(tmp_path):
    rd = RunDir(tmp_path / "run")
    rows = make_rows({"a": 0})
    bad = dict(rows[0], extra_column=1)
    with pytest.raises(ValueError, match="extra_column"):
        rd.commit_part(0, [bad])
    missing = {k: v for k, v in rows[0].items() if k != "verdicts"}
    with pytest.raises(ValueError, match="verdicts"):
        rd.commit_part(0, [missing])
    with pytest.raises(ValueError, match="twice"):
        rd.commit_part(0, rows + rows[:1])
    assert rd.committed_shards() == set()
    with pytest.raises(ValueError):
        RunDir.of(tmp_path, "../escape")


def test_crash_leftover_temp_is_ignored_and_cleaned(tmp_path):
    rd = RunDir(tmp_path / "run")
    rd.commit_part(0, make_rows({"a": 0}))
    # What a SIGKILL between write and rename leaves: a partial temp file.
    leftover = rd.parts_dir / ".part-00000002.deadbeef0000.tmp"
    leftover.write_bytes(b"PAR1 half a file")
    assert rd.committed_shards() == {0}
    assert rd.read_table().num_rows == 2
    assert rd.committed_keys() == {("a", 0), ("a", 1)}
    assert rd.temp_files() == [leftover]
    assert rd.clean_temp() == 1
    assert not leftover.exists() and rd.committed_shards() == {0}


def test_failed_commit_leaves_nothing(tmp_path, monkeypatch):
    rd = RunDir(tmp_path / "run")
    rd.commit_part(0, make_rows({"a": 0}))
    before = snapshot(rd.parts_dir)

    def boom(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk gone"):
        rd.commit_part(1, make_rows({"z": 0}))
    monkeypatch.undo()
    assert snapshot(rd.parts_dir) == before  # old part intact, no temp file
    assert rd.temp_files() == []


def test_writer_gathers_shards_into_parts_with_an_index(tmp_path):
    """Shards arriving out of order become one part: a row group per contiguous shard range, rows
    sorted; the index names it; the version build reads it in shard order and equals one table's."""
    rd = RunDir(tmp_path / "run")
    w = rd.writer(target_bytes=1 << 30, max_age_s=3600)
    shard_rows = {k: make_rows({f"p{k}a": 2 * k, f"p{k}b": 2 * k + 1}) for k in range(8)}
    for k in (1, 0, 3, 2, 6, 4, 7):  # 5 is still out: two ranges, 0-4 and 6-7
        assert w.add(k, shard_rows[k]) is None
    assert rd.committed_shards() == set() and w.pending_shards == 7  # gathered, not committed
    part = w.flush()
    assert rd.committed_shards() == {0, 1, 2, 3, 4, 6, 7} and len(rd.part_files()) == 1
    assert [(g.first_shard, g.last_shard, g.rows) for g in rd.groups()] == [(0, 4, 20), (6, 7, 8)]
    assert pq.ParquetFile(part).metadata.num_row_groups == 2
    (line,) = rd.parts()
    assert line["rows"] == 28 and line["bytes"] == part.stat().st_size
    w.add(5, shard_rows[5])
    w.add(8, [])  # an empty shard: committed, no row group
    w.flush()
    assert rd.committed_shards() == set(range(9))
    t = rd.read_table()
    assert t["prompt_index"].to_pylist() == sorted(t["prompt_index"].to_pylist())  # shard order = prompt order
    all_rows = [r for k in range(8) for r in shard_rows[k]]
    assert data_files(build_version(tmp_path / "a", rd, INFO)) == data_files(
        build_version(tmp_path / "b", table_of(all_rows), INFO))
    # A size bound writes a part as soon as it is reached; a time bound once the oldest waited.
    sized = RunDir(tmp_path / "sized").writer(target_bytes=1, max_age_s=3600)
    assert sized.add(0, shard_rows[0]) is not None
    timed = RunDir(tmp_path / "timed").writer(target_bytes=1 << 30, max_age_s=0)
    assert timed.add(0, shard_rows[0]) is not None


def test_crash_between_rename_and_index_line_commits_nothing(tmp_path):
    """A renamed part no index line names, and a torn last line, are not committed; clean_temp
    removes both, and the next commit appends a whole line."""
    rd = RunDir(tmp_path / "run")
    rd.commit_part(0, make_rows({"a": 0}))
    orphan = rd.parts_dir / "part-00000002.parquet"
    orphan.write_bytes((rd.parts_dir / "part-00000001.parquet").read_bytes())
    with rd.index_path.open("a") as f:
        f.write('{"part": "part-00000002.parquet", "gro')  # the process died mid-line
    assert rd.committed_shards() == {0} and rd.part_files() == [rd.parts_dir / "part-00000001.parquet"]
    assert rd.temp_files() == [orphan]
    assert rd.clean_temp() == 1 and not orphan.exists()
    rd.commit_part(1, make_rows({"b": 1}))
    assert rd.committed_shards() == {0, 1} and rd.read_table().num_rows == 4


# ----------------------------------------------------------------------------- versions


def test_build_version_loads_with_datasets(tmp_path, offline):
    ds = tmp_path / "store" / "ds"
    rows = make_rows({"a": 0, "b": 1, "c": 2}, n=2, accept={("a", 0), ("a", 1), ("b", 1)})
    rows.reverse()  # parts arrive in any order; the version is sorted
    v1 = build_version(ds, table_of(rows), INFO)
    assert v1 == ds / "v1"
    assert sorted(p.name for p in ds.iterdir()) == ["v1"]  # no temp dir left

    all_t = read_version_table(v1, "all")
    assert all_t.schema == ALL_SCHEMA
    assert list(zip(all_t["prompt_index"].to_pylist(), all_t["sample_index"].to_pylist())) == [
        (0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert all_t["pass_rate"].to_pylist() == [1.0, 1.0, 0.5, 0.5, 0.0, 0.0]
    default_t = read_version_table(v1, "default")
    assert default_t.schema == DEFAULT_SCHEMA
    assert list(zip(default_t["prompt_id"].to_pylist(), default_t["sample_index"].to_pylist())) == [
        ("a", 0), ("a", 1), ("b", 1)]

    d = load(v1, "default", offline)
    assert d.num_rows == 3 and set(d.column_names) == set(DEFAULT_SCHEMA.names)
    assert d[0]["messages"][-1]["role"] == "assistant"
    assert d[0]["messages"][0] == {"role": "user", "content": "problem a"}  # system turn dropped
    assert d["pass_rate"] == [1.0, 1.0, 0.5]
    a = load(v1, "all", offline)
    assert a.num_rows == 6 and "verdicts" in a.column_names
    assert a[4]["reject_reason"] == "math:wrong_answer"
    assert load(v1, None, offline).num_rows == 3  # no config name: `default` is the default

    m = load_manifest(v1)
    assert m["version"] == "v1" and m["number"] == 1 and m["name"] == "ds"
    assert m["configs"]["default"]["rows"] == 3 and m["configs"]["all"]["rows"] == 6
    assert m["changelog"][-1]["message"] == "first version: 3 prompts, 6 rows"
    assert all(not Path(f["path"]).is_absolute() for f in m["files"])
    assert str(tmp_path) not in json.dumps(m)  # self-contained: no absolute paths inside
    for f in (v1 / "data").rglob("*"):
        if f.is_file():
            assert not os.access(f, os.W_OK) or os.geteuid() == 0
            assert f.stat().st_mode & 0o222 == 0


def test_version_with_nothing_accepted(tmp_path, offline):
    rows = make_rows({"a": 0}, n=2, accept=set())  # everything rejected
    v1 = build_version(tmp_path / "ds", table_of(rows), INFO)
    assert load(v1, "all", offline).num_rows == 2
    # `default` is a valid, empty Parquet file with the full schema (no 0-row row group, which
    # readers that size batches from the first row group choke on). `datasets` itself refuses to
    # load an empty split, so the card says so instead.
    f = pq.ParquetFile(v1 / "data" / "default" / "train-00000-of-00001.parquet")
    assert f.metadata.num_rows == 0 and f.metadata.num_row_groups == 0
    assert f.schema_arrow == DEFAULT_SCHEMA
    assert "No trace was accepted" in (v1 / "README.md").read_text()
    assert verify_files(v1) == []


def test_versions_are_immutable_and_incremental(tmp_path, offline):
    ds = tmp_path / "ds"
    v1 = build_version(ds, table_of(make_rows({"a": 0, "b": 1}, n=2)), INFO)
    before = snapshot(v1)

    # Next run: prompts b (already published, regenerated differently) and c (new); plus a
    # third sample for b that was never published.
    again = make_rows({"b": 0}, n=3, tag=" regenerated", accept={("b", 0), ("b", 1), ("b", 2)})
    fresh = make_rows({"c": 1}, n=2)
    v2 = build_version(ds, table_of(fresh + again), dict(INFO, run_id="run-2"), parent=v1)

    assert v2 == ds / "v2"
    assert snapshot(v1) == before  # v1 byte for byte untouched
    t = read_version_table(v2, "all")
    keys = list(zip(t["prompt_id"].to_pylist(), t["sample_index"].to_pylist()))
    assert len(keys) == len(set(keys)) == 7
    # Parent rows first, in their published order; then the new rows sorted.
    assert keys[:4] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert sorted(keys[4:]) == [("b", 2), ("c", 0), ("c", 1)]
    # Published keys keep their published content.
    b_rows = t.filter(pa.compute.equal(t["prompt_id"], "b")).to_pylist()
    published = {r["sample_index"]: r for r in b_rows}
    assert "regenerated" not in published[0]["reasoning"]
    assert published[1]["accepted"] is False
    assert "regenerated" in published[2]["reasoning"]
    # pass_rate is recomputed over the union: b has 3 samples, 2 accepted now (s0 old, s2 new).
    assert published[0]["pass_rate"] == pytest.approx(2 / 3)

    m = load_manifest(v2)
    assert m["parent"] == "v1" and m["run_id"] == "run-2"
    assert [e["version"] for e in m["changelog"]] == ["v1", "v2"]
    last = m["changelog"][-1]
    assert last["message"] == "added 1 prompts, 3 rows"
    assert last["skipped_published_rows"] == 2
    assert load(v2, "all", offline).num_rows == 7
    assert load(v1, "all", offline).num_rows == 4

    vs = list_versions(ds)
    assert [(v.version, v.number, v.rows["all"], v.parent) for v in vs] == [
        ("v1", 1, 4, None), ("v2", 2, 7, "v1")]
    assert vs[0].teacher_model == "tiny-teacher" and vs[0].fingerprint == "abc123def456"
    assert vs[1].counts["generations"] == 7
    assert latest_version(ds) == v2


def test_failure_mid_build_leaves_no_version(tmp_path, monkeypatch):
    ds = tmp_path / "ds"
    v1 = build_version(ds, table_of(make_rows({"a": 0})), INFO)
    before = snapshot(v1)

    def broken(*a, **k):
        raise RuntimeError("card renderer exploded")

    monkeypatch.setattr(card_mod, "render_card", broken)
    with pytest.raises(RuntimeError, match="exploded"):
        build_version(ds, table_of(make_rows({"b": 0})), INFO, parent=v1)
    assert sorted(p.name for p in ds.iterdir()) == ["v1"]
    assert snapshot(v1) == before

    # A failure while writing data files (the second config) leaves nothing either.
    monkeypatch.undo()
    real = version_mod.write_parquet_durably
    calls = []

    def flaky(table, path, **kw):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("no space left")
        real(table, path, **kw)

    monkeypatch.setattr(version_mod, "write_parquet_durably", flaky)
    with pytest.raises(OSError, match="no space"):
        build_version(ds, table_of(make_rows({"b": 0})), INFO)
    assert sorted(p.name for p in ds.iterdir()) == ["v1"]
    assert latest_version(ds) == v1


def test_number_taken_meanwhile_goes_to_next(tmp_path, monkeypatch):
    ds = tmp_path / "ds"
    v1 = build_version(ds, table_of(make_rows({"a": 0})), INFO)
    before = snapshot(v1)
    # Another builder claimed v1 between our look and our rename.
    monkeypatch.setattr(version_mod, "_next_number", lambda d: 1)
    v = build_version(ds, table_of(make_rows({"b": 0})), INFO)
    assert v == ds / "v2"
    m = load_manifest(v)
    assert m["version"] == "v2" and m["number"] == 2 and m["changelog"][-1]["version"] == "v2"
    card = (v / "README.md").read_text()
    assert "# ds (v2)" in card and '"factory-store/ds/v2"' in card and "ds/v1" not in card
    assert snapshot(v1) == before


def test_list_versions_skips_incomplete_and_never_reuses_numbers(tmp_path):
    ds = tmp_path / "ds"
    assert list_versions(ds) == [] and latest_version(ds) is None
    build_version(ds, table_of(make_rows({"a": 0})), INFO)
    (ds / "v3").mkdir()  # a stray, manifest-less dir: not a version, but its number is taken
    (ds / ".build-00000000-1-abcd").mkdir()  # another host's temp dir: not listed, not touched
    (ds / "notes").mkdir()
    assert [v.version for v in list_versions(ds)] == ["v1"]
    v = build_version(ds, table_of(make_rows({"b": 0})), INFO)
    assert v.name == "v4"
    assert [v.version for v in list_versions(ds)] == ["v1", "v4"]
    assert (ds / ".build-00000000-1-abcd").exists()


def test_stale_build_dir_of_dead_process_is_cleaned(tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = ds / f"{version_mod.BUILD_PREFIX}{version_mod._HOST_TAG}-{dead.pid}-dead"
    live = ds / f"{version_mod.BUILD_PREFIX}{version_mod._HOST_TAG}-{os.getpid()}-live"
    stale.mkdir()
    live.mkdir()
    (stale / "x.parquet").write_bytes(b"partial")
    assert clean_stale_builds(ds) == [stale]
    assert not stale.exists() and live.exists()


def test_large_tables_are_split_into_files(tmp_path, offline, monkeypatch):
    monkeypatch.setattr(version_mod, "ROWS_PER_FILE", 4)
    v1 = build_version(tmp_path / "ds", table_of(make_rows({f"p{i}": i for i in range(5)}, n=2)), INFO)
    m = load_manifest(v1)
    alls = [f for f in m["files"] if f["config"] == "all"]
    assert [f["path"] for f in alls] == [f"data/all/train-0000{i}-of-00003.parquet" for i in range(3)]
    assert [f["rows"] for f in alls] == [4, 4, 2]
    assert verify_files(v1) == []
    t = load(v1, "all", offline)
    assert t["prompt_index"] == [i for i in range(5) for _ in range(2)]


def test_parent_that_fails_its_check_is_refused(tmp_path):
    ds = tmp_path / "ds"
    v1 = build_version(ds, table_of(make_rows({"a": 0})), INFO)
    f = next((v1 / "data" / "all").glob("*.parquet"))
    f.chmod(0o644)
    f.write_bytes(f.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(VersionError, match="manifest check"):
        build_version(ds, table_of(make_rows({"b": 0})), INFO, parent=v1)
    assert [v.version for v in list_versions(ds)] == ["v1"]


# ----------------------------------------------------------------------------- lock


HOLDER = """
import sys, time
from factory.store.lock import dataset_lock
with dataset_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_lock_contention_and_kill_frees_it(tmp_path):
    ds = tmp_path / "store" / "myset"
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(ds)], cwd=REPO,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(DatasetLocked, match=rf"another run is writing 'myset' \(pid {child.pid}, started "):
            with dataset_lock(ds):
                pass
    finally:
        child.send_signal(signal.SIGKILL)  # no cleanup code runs: the kernel must free the lock
        child.wait()
    with dataset_lock(ds) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
        # A second lock in the same process is refused too (flock is per open file).
        with pytest.raises(DatasetLocked):
            with dataset_lock(ds):
                pass
    with dataset_lock(ds):  # released on exit
        pass


# ----------------------------------------------------------------------------- streaming build


def many_part_run(path: Path, parts: int, prompts: int, n: int, text: int = 0, seed: int = 0) -> RunDir:
    """A run as the driver leaves it: one part per shard of consecutive prompts, rows sorted."""
    import random

    rnd = random.Random(seed)
    rd = RunDir(path)
    for k in range(parts):
        ids = {f"s{k}p{j}": k * prompts + j for j in range(prompts)}
        accept = {(pid, s) for pid in ids for s in range(n) if rnd.random() < 0.4}
        rows = make_rows(ids, n=n, accept=accept, tag=" " + "x" * text)
        for r in rows:
            r["num_tokens"] = rnd.randint(1, 400)
        rd.commit_part(k, rows)
    return rd


def data_files(vdir: Path) -> list[tuple[str, int, str]]:
    """Every file but report.html (it names its build time); the plots are drawn from the rows
    alone, so they must match byte for byte too."""
    return [(f["path"], f["rows"], f["sha256"]) for f in load_manifest(vdir)["files"] if f["path"] != "report.html"]


def test_build_from_run_parts_equals_build_from_one_table(tmp_path, monkeypatch):
    """The build streams a run part by part; the result is byte for byte what one table of the
    same rows gives, with several files and row groups per config, and incrementally too."""
    monkeypatch.setattr(version_mod, "ROWS_PER_FILE", 300)
    monkeypatch.setattr(version_mod, "ROW_GROUP_TARGET_BYTES", 64 * 1024)  # groups of ~100-200 rows
    run1 = many_part_run(tmp_path / "run1", parts=30, prompts=5, n=4)
    run2 = many_part_run(tmp_path / "run2", parts=6, prompts=5, n=6, seed=1)  # same ids: samples 4, 5 are new
    streamed = build_version(tmp_path / "a", run1, INFO)
    in_memory = build_version(tmp_path / "b", run1.read_table(), INFO)
    assert data_files(streamed) == data_files(in_memory)
    groups = [pq.ParquetFile(streamed / p).metadata.num_row_groups for p, _, _ in data_files(streamed)
              if p.startswith("data/")]
    assert len(groups) > 2 and max(groups) > 1  # several files, several groups: the layout is tested
    streamed2 = build_version(tmp_path / "a", run2, INFO, parent=streamed)
    in_memory2 = build_version(tmp_path / "b", run2.read_table(), INFO, parent=in_memory)
    assert data_files(streamed2) == data_files(in_memory2)
    m = load_manifest(streamed2)
    assert m["changelog"][-1]["skipped_published_rows"] == 6 * 5 * 4 and m["configs"]["all"]["rows"] == 30 * 5 * 4 + 60
    for key in ("counts", "pass_rate", "tokens", "configs"):
        assert m[key] == load_manifest(in_memory2)[key]


def test_incremental_build_with_old_and_new_prompts_in_one_part(tmp_path, monkeypatch):
    """A part holding both prompts of the parent (new samples of them) and new prompts: each row's
    pass_rate counts its prompt's rows over the whole version, as the in-memory build does."""
    monkeypatch.setattr(version_mod, "ROW_GROUP_TARGET_BYTES", 64 * 1024)
    parent_run = many_part_run(tmp_path / "p", parts=4, prompts=3, n=4)  # s{k}p0..p2
    run = many_part_run(tmp_path / "r", parts=4, prompts=5, n=6, seed=3)  # the same and s{k}p3, p4
    streamed = build_version(tmp_path / "a", run, INFO, parent=build_version(tmp_path / "a", parent_run, INFO))
    in_memory = build_version(tmp_path / "b", run.read_table(), INFO,
                              parent=build_version(tmp_path / "b", parent_run.read_table(), INFO))
    assert data_files(streamed) == data_files(in_memory)
    t = read_version_table(streamed, "all")
    assert t.num_rows == 4 * 3 * 4 + 4 * 3 * 2 + 4 * 2 * 6  # parent, new samples of its prompts, new prompts
    for key in ("counts", "pass_rate"):
        assert load_manifest(streamed)[key] == load_manifest(in_memory)[key]


def test_build_from_overlapping_parts_is_still_sorted_and_deduped(tmp_path):
    """Parts not in prompt order, or a prompt in two parts: the build falls back to all rows at
    once, and gives what one table of the same rows gives."""
    rd = RunDir(tmp_path / "run")
    rd.commit_part(0, make_rows({"c": 2, "d": 3}))
    rd.commit_part(1, make_rows({"a": 0, "b": 1}))  # shard order is not prompt order here
    v1 = build_version(tmp_path / "ds", rd, INFO)
    assert read_version_table(v1, "all")["prompt_id"].to_pylist() == ["a", "a", "b", "b", "c", "c", "d", "d"]
    assert data_files(v1) == data_files(build_version(tmp_path / "ds1", rd.read_table(), INFO))

    spans = RunDir(tmp_path / "spans")
    spans.commit_part(0, make_rows({"a": 0}))
    spans.commit_part(1, make_rows({"a": 5}, tag=" again"))  # later keys, but (a, 0), (a, 1) again
    v2 = build_version(tmp_path / "ds2", spans, INFO)
    t = read_version_table(v2, "all")
    assert list(zip(t["prompt_id"].to_pylist(), t["sample_index"].to_pylist())) == [("a", 0), ("a", 1)]
    assert not any("again" in r for r in t["reasoning"].to_pylist())  # the first row of a key stays
    assert data_files(v2) == data_files(build_version(tmp_path / "ds3", spans.read_table(), INFO))


PEAK_CHILD = """
import json, sys
import pyarrow as pa
from factory.store import version
from factory.store.parts import RunDir
version.ROW_GROUP_TARGET_BYTES = 256 * 1024  # small row groups: the writer holds one at a time
version.build_version(sys.argv[1], RunDir(sys.argv[2]), json.loads(sys.argv[3]))
print(pa.default_memory_pool().max_memory())
"""


def test_build_from_a_run_never_holds_the_whole_run(tmp_path):
    """Peak Arrow allocation of a build (in a fresh process, so the peak is the build's alone) stays
    far below the run's size: the builder reads one part at a time, never the whole run."""
    # 4,000 rows of ~6 KB in 200 parts; a row group is 100 rows (the minimum), so a streaming build
    # holds a few hundred rows at most; an in-memory one holds 4,000 at least once.
    rd = many_part_run(tmp_path / "run", parts=200, prompts=5, n=4, text=2000)
    run_bytes = sum(pq.read_table(p).nbytes for p in rd.part_files())
    assert run_bytes > 20_000_000
    out = subprocess.run([sys.executable, "-c", PEAK_CHILD, str(tmp_path / "ds"), str(rd.path), json.dumps(INFO)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    peak = int(out.stdout.split()[-1])
    assert 0 < peak < run_bytes / 4, f"build peaked at {peak} bytes of Arrow memory for a {run_bytes}-byte run"
    assert load_manifest(tmp_path / "ds" / "v1")["configs"]["all"]["rows"] == 200 * 5 * 4
