"""The manifest (counts from the rows, hashes that catch tampering) and the dataset card (YAML the
Hub and `datasets` read, a body that answers a reader's first questions)."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from factory.store.card import front_matter, license_of, render_card, size_category
from factory.store.manifest import PACKAGES, RowStats, package_versions, per_prompt, table_stats, verify_files
from factory.store.schema import PART_SCHEMA, trace_row
from factory.store.version import build_version, load_manifest
from factory.types import Completion, Prompt, Trace, Verdict

INFO = {
    "config": {"output": {"store": "my-store", "name": "ds"}, "sampling": {"n": 4}},
    "fingerprint": "f00dfeed0001",
    "seed": 7,
    "teacher": {"model": "org/teacher-7b", "revision": "abc123", "engine": "vllm", "dtype": "bfloat16"},
    "verifiers": [{"name": "truncation", "version": "1", "params": {}},
                  {"name": "math", "version": "2", "params": {"timeout_s": 5}}],
    "source": {"kind": "hub", "name": "org/problems", "revision": "deadbeef", "split": "train", "prompts": 5},
    "stats": {"prompts": 5, "prefiltered": {"too_long": 2}, "generations": 12, "tokens_out": 999,
              "wall_s": 12.5, "tokens_per_s": float("nan"), "first_accept_s": None},
    "run_id": "20250101-abc",
    "sampling": {"n": 4, "temperature": 0.6, "top_p": 0.95, "max_tokens": 2048},
}

# (prompt_id, sample) -> (num_tokens, finish_reason, truncation verdict, math verdict)
PLAN = {
    ("p0", 0): (100, "stop", True, True),
    ("p0", 1): (200, "stop", True, True),
    ("p0", 2): (300, "stop", True, False),
    ("p0", 3): (400, "stop", True, None),          # math could not tell -> rejected as unknown
    ("p1", 0): (2048, "length", False, None),      # truncated
    ("p1", 1): (50, "stop", True, False),
    ("p1", 2): (60, "stop", True, False),
    ("p1", 3): (70, "stop", True, True),
    ("p2", 0): (10, "stop", True, False),
    ("p2", 1): (20, "stop", True, False),
    ("p2", 2): (30, "stop", True, False),
    ("p2", 3): (40, "stop", True, False),
}


def rows() -> list[dict]:
    out = []
    for (pid, s), (tokens, finish, trunc_ok, math_ok) in PLAN.items():
        idx = int(pid[1:])
        p = Prompt(pid, idx, f"problem {idx} | with a pipe", "7", [{"role": "user", "content": "q"}], "org/problems@deadbeef")
        c = Completion(pid, s, "text", finish, prompt_tokens=30, num_tokens=tokens)
        t = Trace(p, c, "r", "a", True, True, "7")
        verdicts = [
            Verdict("truncation", trunc_ok, None if trunc_ok else "length"),
            Verdict("math", math_ok, {True: None, False: "wrong_answer", None: "unparseable_reference"}[math_ok]),
        ]
        out.append(trace_row(t, verdicts))
    return out


@pytest.fixture
def version(tmp_path):
    return build_version(tmp_path / "ds", pa.Table.from_pylist(rows(), schema=PART_SCHEMA), INFO)


# ----------------------------------------------------------------------------- manifest


def test_manifest_counts_come_from_the_rows(version):
    m = load_manifest(version)
    c = m["counts"]
    assert (c["prompts"], c["generations"], c["accepted"], c["rejected"]) == (3, 12, 3, 9)
    assert c["rejected_by_reason"] == {"math:wrong_answer": 7, "math:unparseable_reference": 1,
                                       "truncation:length": 1}
    assert c["verifiers"] == {"truncation": {"passed": 11, "failed": 1, "unknown": 0},
                              "math": {"passed": 3, "failed": 7, "unknown": 2}}
    assert list(c["verifiers"]) == ["truncation", "math"]  # the run's order
    assert c["finish_reason"] == {"stop": 11, "length": 1}
    assert m["pass_rate"]["histogram"] == {"0": 1, "(0, 0.25)": 0, "[0.25, 0.5)": 1, "[0.5, 0.75)": 1,
                                           "[0.75, 1)": 0, "1": 0}
    assert m["pass_rate"]["prompts_with_accepted"] == 2
    assert m["pass_rate"]["mean"] == pytest.approx((0.5 + 0.25 + 0) / 3, abs=1e-4)
    acc = m["tokens"]["accepted"]
    assert (acc["count"], acc["mean"], acc["max"], acc["total"]) == (3, pytest.approx(123.3), 200, 370)
    everything = m["tokens"]["all"]
    assert everything["max"] == 2048 and everything["count"] == 12
    assert everything["p50"] in (60, 70) and everything["p90"] in (400, 2048)


def test_manifest_provenance_is_complete_and_strict_json(version):
    text = (version / "manifest.json").read_text()
    m = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert m["format"] == 1 and m["name"] == "ds" and m["version"] == "v1"
    assert m["created_at"].endswith("Z")
    assert m["factory_version"]
    assert set(m["packages"]) == set(PACKAGES)
    assert m["packages"]["pyarrow"] == pa.__version__
    assert m["run_stats"]["tokens_per_s"] is None  # NaN became null
    assert m["run_stats"]["prefiltered"] == {"too_long": 2}
    assert m["config"] == INFO["config"] and m["seed"] == 7 and m["fingerprint"] == "f00dfeed0001"
    assert m["teacher"]["revision"] == "abc123" and m["source"]["revision"] == "deadbeef"
    assert "git" in m  # a commit dict in a repo with history, else null
    for f in m["files"]:
        assert not f["path"].startswith("/") and len(f["sha256"]) == 64 and f["bytes"] > 0
    assert m["configs"]["default"]["rows"] == 3 and m["configs"]["all"]["rows"] == 12
    assert "pending_change" not in m


def test_package_versions_reports_missing_as_null(monkeypatch):
    from factory.store import manifest

    monkeypatch.setattr(manifest, "PACKAGES", ["pyarrow", "no-such-package-for-factory"])
    assert package_versions() == {"pyarrow": pa.__version__, "no-such-package-for-factory": None}


def test_verify_files_catches_tampering(version):
    assert verify_files(version) == []
    f = version / "data" / "default" / "train-00000-of-00001.parquet"
    data = f.read_bytes()
    f.chmod(0o644)
    # Same size, one byte changed: only the hash can tell.
    f.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    assert verify_files(version) == ["data/default/train-00000-of-00001.parquet: sha256 differs from the manifest"]
    f.write_bytes(data + b"x")
    assert "bytes, manifest says" in verify_files(version)[0]
    f.write_bytes(data)
    assert verify_files(version) == []
    extra = version / "data" / "all" / "train-00009-of-00009.parquet"
    extra.write_bytes(data)
    assert verify_files(version) == ["data/all/train-00009-of-00009.parquet: not in the manifest "
                                     "(load_dataset would read it)"]
    extra.unlink()
    f.unlink()
    assert verify_files(version) == ["data/default/train-00000-of-00001.parquet: missing"]
    (version / "manifest.json").chmod(0o644)
    (version / "manifest.json").unlink()
    assert "manifest.json is missing" in verify_files(version)[0]


def test_stats_of_an_empty_table():
    s = table_stats(PART_SCHEMA.empty_table())
    assert s["counts"]["generations"] == 0 and s["pass_rate"]["mean"] is None
    assert s["tokens"]["all"] == {"count": 0, "total": 0, "mean": None, "p50": None, "p90": None, "max": None}


def random_table(n: int, seed: int) -> pa.Table:
    """n rows like rows(), with random token counts (some null), prompts and outcomes."""
    rnd = random.Random(seed)
    base = rows()
    out = []
    for i in range(n):
        r = dict(base[rnd.randrange(len(base))], prompt_id=f"p{rnd.randrange(n // 3 + 1)}", sample_index=i)
        r.update(num_tokens=None if rnd.random() < 0.05 else rnd.randint(0, 60), prompt_tokens=rnd.randint(1, 9),
                 error="boom" if rnd.random() < 0.1 else None)
        out.append(r)
    return pa.Table.from_pylist(out, schema=PART_SCHEMA)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 11, 100, 301])
def test_token_summaries_are_pyarrows(n):
    """The build counts token values instead of holding every row's; the summaries must still be
    exactly pyarrow's quantile ("nearest"), mean, sum and max of the column."""
    t = random_table(n, seed=n)
    values = pc.drop_null(t["num_tokens"])
    got = table_stats(t)["tokens"]["all"]
    if len(values) == 0:
        assert got["count"] == 0
        return
    p50, p90 = pc.quantile(values, q=[0.5, 0.9], interpolation="nearest").to_pylist()
    assert (got["p50"], got["p90"]) == (p50, p90)
    assert got["mean"] == round(pc.mean(values).as_py(), 1)
    assert (got["count"], got["total"], got["max"]) == (len(values), pc.sum(values).as_py(), pc.max(values).as_py())


def test_stats_added_chunk_by_chunk_equal_stats_of_the_whole():
    t = random_table(120, seed=5)
    order = ["truncation", "math"]
    stats = RowStats(order)
    for start in range(0, t.num_rows, 7):
        stats.add(t.slice(start, 7))
    g = per_prompt(t)
    assert stats.summary(list(zip(g["accepted"].to_pylist(), g["samples"].to_pylist()))) == table_stats(t, order)


# ----------------------------------------------------------------------------- card


def split_card(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def test_card_front_matter_is_what_the_hub_reads(version):
    from huggingface_hub import DatasetCard

    text = (version / "README.md").read_text()
    meta, body = split_card(text)
    assert meta["license"] == "other"
    assert meta["task_categories"] == ["text-generation"]
    assert meta["size_categories"] == ["n<1K"]
    assert {"synthetic", "reasoning", "chain-of-thought", "math", "factory"} <= set(meta["tags"])
    configs = {c["config_name"]: c for c in meta["configs"]}
    assert configs["default"]["default"] is True and "default" not in configs["all"]
    assert configs["default"]["data_files"] == [{"split": "train", "path": "data/default/*.parquet"}]
    assert configs["all"]["data_files"] == [{"split": "train", "path": "data/all/*.parquet"}]

    card = DatasetCard(text)
    assert card.data.license == "other"
    assert card.data.to_dict()["configs"] == meta["configs"]
    assert "org/teacher-7b" in card.text


def test_card_body_answers_the_first_questions(version):
    _, body = split_card((version / "README.md").read_text())
    for needle in ["org/teacher-7b", "abc123", "org/problems", "deadbeef", "`temperature` | 0.6",
                   "`math` | 2 |", '{"timeout_s": 5}', "| `math:wrong_answer` | 7 | 58.3% |",
                   "| `truncation:length` | 1 |", "`too_long` | 2", "| `math` | 3 | 7 | 2 |",
                   "| accepted | 3 | 123.3 |", "2 of 3 prompts", "first version: 3 prompts, 12 rows",
                   'load_dataset("my-store/ds/v1", "default", split="train")',
                   "no license was set"]:
        assert needle in body, needle
    # A pipe in data must not break a Markdown table row.
    table_lines = [ln for ln in body.splitlines() if ln.startswith("|")]
    assert all(ln.endswith("|") for ln in table_lines)


def test_card_with_repo_id_and_license(version):
    m = load_manifest(version)
    m["license"] = "apache-2.0"
    text = render_card(m, repo_id="org/my-traces")
    meta, body = split_card(text)
    assert meta["license"] == "apache-2.0" and license_of(m) == ("apache-2.0", True)
    assert 'load_dataset("org/my-traces", "all", revision="v1", split="train")' in body
    assert "no license was set" not in body
    m2 = dict(m, license=None, config={"output": {"license": "mit"}})
    assert front_matter(m2)["license"] == "mit"


def test_card_changelog_and_odd_values_stay_valid_yaml(version):
    from huggingface_hub import DatasetCardData

    m = load_manifest(version)
    m["name"] = 'weird: name # with "quotes"'
    m["changelog"].append({"version": "v2", "created_at": "2025-01-02T00:00:00Z", "message": "added 4 prompts, 16 rows"})
    meta, body = split_card(render_card(m))
    assert meta["pretty_name"] == 'weird: name # with "quotes"'
    assert DatasetCardData(**meta).pretty_name == meta["pretty_name"]
    assert body.index("**v2**") < body.index("**v1**")  # newest first


@pytest.mark.parametrize("n,label", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (10**5, "100K<n<1M"),
                                     (5 * 10**6, "1M<n<10M"), (10**13, "n>1T")])
def test_size_category(n, label):
    assert size_category(n) == label

