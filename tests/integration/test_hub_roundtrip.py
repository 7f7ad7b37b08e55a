"""Publish to and read from the Hub at the protocol level: the real huggingface_hub client and
datasets.load_dataset talk HTTP to tests/support/hubserver/ on loopback.

The client runs in a fresh subprocess per step group, because huggingface_hub and datasets read
HF_ENDPOINT / HF_HOME when first imported; the server runs in a thread of this process so the tests
can inject failures and read what it stored. HF_HUB_DISABLE_XET=1: the server speaks LFS, not Xet.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from factory.store.schema import PART_SCHEMA, trace_row
from factory.store.version import build_version
from factory.types import Completion, Prompt, Trace, Verdict

from tests.support.hubserver import LocalHub

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_" + secrets.token_hex(17)  # looks like a real token, so the scrubber's pattern is exercised too
READ_TOKEN = "hf_" + secrets.token_hex(17)
REPO = "org/demo"

# One step per line of JSON in argv; each prints one JSON line: {"ok", "result" | "error", "type"}.
DRIVER = textwrap.dedent('''
    import json, logging, sys
    if "--debug" in sys.argv:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    from factory import hub as H
    FAST = H.RetryPolicy(tries=3, base=0.05, cap=0.2)

    def step(kind, *a):
        if kind == "publish":
            r = H.publish_version(a[0], a[1], retry=FAST)
            return {"commit": r.commit, "uploaded": r.uploaded, "reused": r.reused, "deleted": r.deleted,
                    "already": r.already_published, "message": r.message}
        if kind == "list":
            return [dict(tag=v.tag, commit=v.commit, rows=v.rows, teacher=v.teacher, changes=v.changes,
                         date=v.date, parent=v.parent) for v in H.list_hub_versions(a[0], retry=FAST)]
        if kind == "pull":
            return str(H.pull(a[0], a[1], config=a[2], to=a[3], retry=FAST))
        if kind == "load":
            import datasets
            ds = datasets.load_dataset(a[0], a[1], revision=a[2], split="train")
            return {"rows": ds.num_rows, "prompt_ids": sorted(set(ds["prompt_id"]))}
        if kind == "table":
            from rich.console import Console
            from factory.hub.versions import list_hub_versions_table
            console = Console(record=True, width=200)
            console.print(list_hub_versions_table(a[0]))
            return console.export_text()
        if kind == "source":  # a Hub dataset as a run's input: what identity does the run record?
            from factory.config import load_config
            from factory.sources import input_identity, load_prompts
            cfg = load_config(None, data={"source": {"dataset": a[0], "subset": "all", "revision": a[1],
                                                     "columns": {"reference": "reference"}}})
            ps = load_prompts(cfg)
            return {"identity": input_identity(ps.info), "prompts": len(ps.prompts)}
        if kind == "cli":  # the real entry point: errors are printed (and exit codes set) by factory.cli
            from factory.cli import main
            return main(a[0])
        raise ValueError(kind)

    for line in sys.argv[1:]:
        if line == "--debug":
            continue
        kind, *rest = json.loads(line)
        try:
            out = {"ok": True, "result": step(kind, *rest)}
        except Exception as e:
            out = {"ok": False, "type": type(e).__name__, "error": str(e)}
        print(json.dumps(out), flush=True)
''')


# ----------------------------------------------------------------------------- fixtures


def _rows(lo: int, hi: int, accept: bool) -> pa.Table:
    out = []
    for i in range(lo, hi):
        q = f"What is {i}+{i}?"
        p = Prompt(prompt_id=f"p{i:03d}", index=i, problem=q, reference=str(2 * i),
                   messages=[{"role": "user", "content": q}], source="test:arith")
        for s in range(2):
            ans = f"\\boxed{{{2 * i}}}"
            c = Completion(prompt_id=p.prompt_id, sample_index=s, text=f"<think>add</think>{ans}",
                           finish_reason="stop", prompt_tokens=5, num_tokens=7 + s)
            t = Trace(prompt=p, completion=c, reasoning="add", answer_text=ans, has_think_tags=True,
                      think_tags_balanced=True, extracted_answer=str(2 * i))
            ok = accept and s == 0
            out.append(trace_row(t, [Verdict("math", ok, None if ok else "wrong_answer")]))
    return pa.Table.from_pylist(out, schema=PART_SCHEMA)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """v1: 6 prompts; v2: +3 prompts all rejected (so `default` is byte-identical to v1's);
    v3: +3 accepted prompts (both configs change)."""
    d = tmp_path_factory.mktemp("store") / "demo"
    info = {"teacher": {"model": "tiny/teacher"}, "run_id": "r1"}
    v1 = build_version(d, _rows(0, 6, True), info)
    v2 = build_version(d, _rows(6, 9, False), info, parent=v1)
    v3 = build_version(d, _rows(9, 12, True), info, parent=v2)
    return {"v1": v1, "v2": v2, "v3": v3}


@pytest.fixture(scope="module")
def hub():
    with LocalHub(token=TOKEN, read_token=READ_TOKEN) as h:
        yield h


@pytest.fixture(scope="module")
def client(hub: LocalHub, tmp_path_factory: pytest.TempPathFactory):
    """run(*steps, token=..., debug=False) -> (list of step outputs, completed process)."""
    base = tmp_path_factory.mktemp("client")
    driver = base / "driver.py"
    driver.write_text(DRIVER)
    hf_home = base / "hf_home"

    def run(*steps: list[Any], token: str | None = TOKEN, debug: bool = False,
            home: Path | None = None) -> tuple[list[dict[str, Any]], subprocess.CompletedProcess[str]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
        env.update(hub.env(str(home or hf_home), token=token))
        env["PYTHONPATH"] = str(ROOT)
        argv = [sys.executable, str(driver), *(["--debug"] if debug else []), *map(json.dumps, steps)]
        proc = subprocess.run(argv, env=env, cwd=base, capture_output=True, text=True, timeout=240)
        outs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        assert proc.returncode == 0 and len(outs) == len(steps), proc.stdout + proc.stderr
        return outs, proc

    run.base = base  # type: ignore[attr-defined]
    return run


def _manifest(version_dir: Path) -> dict[str, Any]:
    return json.loads((version_dir / "manifest.json").read_text())


def _sha(version_dir: Path, config: str) -> str:
    return next(f["sha256"] for f in _manifest(version_dir)["files"] if f["config"] == config)


@pytest.fixture(scope="module")
def published(hub: LocalHub, client, store: dict[str, Path]) -> list[dict[str, Any]]:
    outs, _ = client(["publish", str(store["v1"]), REPO], ["publish", str(store["v2"]), REPO])
    assert all(o["ok"] for o in outs), outs
    return [o["result"] for o in outs]


# ----------------------------------------------------------------------------- tests


def test_two_versions_one_commit_and_tag_each_v2_incremental(hub: LocalHub, published, store) -> None:
    r1, r2 = published
    repo = hub.repo(REPO)
    assert repo.tags == {"v1": r1["commit"], "v2": r2["commit"]}
    assert repo.branches["main"] == r2["commit"]
    # One commit per version on top of the repo's initial commit.
    assert repo.commits[r2["commit"]].parent == r1["commit"]
    assert repo.commits[r1["commit"]].parent is not None and repo.commits[repo.commits[r1["commit"]].parent].parent is None

    default = "data/default/train-00000-of-00001.parquet"
    all_ = "data/all/train-00000-of-00001.parquet"
    report = {"report.html", *(f"plots/{n}.png" for n in ("pass_rate", "length", "rejects", "tokens"))}
    assert set(r1["uploaded"]) == {default, all_, "README.md", "manifest.json", *report}
    # v2's report differs where its rows do (more prompts): only changed report files are sent.
    v2_report = {f["path"]: f["sha256"] for f in _manifest(store["v2"])["files"] if f["path"] in report}
    v1_report = {f["path"]: f["sha256"] for f in _manifest(store["v1"])["files"] if f["path"] in report}
    changed = {p for p in report if v2_report[p] != v1_report[p]}
    assert "report.html" in changed and changed != {"report.html"}  # it names its version; the plots show v2's rows
    assert [p for p in r2["reused"] if p.startswith("data/")] == [default]
    assert set(r2["reused"]) - {default} == report - changed
    assert default not in r2["uploaded"] and all_ in r2["uploaded"]
    # v2's commit names only what changed (the Hub keeps the rest from the parent commit), and
    # the LFS batch of v2 never even asked about the unchanged file.
    commits = [c for c in hub.calls("commit") if c["repo_id"] == REPO and c["status"] == 200]
    assert sorted(commits[1]["ops"]) == sorted(
        [("file", "README.md"), ("file", "manifest.json"), ("lfsFile", all_)]
        + [("file" if p.endswith(".html") else "lfsFile", p) for p in changed])
    batches = [c for c in hub.calls("lfs_batch") if c["repo_id"] == REPO]
    assert sorted(batches[-1]["oids"]) == sorted([_sha(store["v2"], "all")]
                                                 + [v2_report[p] for p in changed if p.endswith(".png")])
    # The server got the bytes of v1's default file once, v2's `all` once: nothing re-sent.
    assert _sha(store["v1"], "default") == _sha(store["v2"], "default")
    puts = hub.uploaded_oids()
    assert puts.count(_sha(store["v1"], "default")) == 1
    assert puts.count(_sha(store["v2"], "all")) == 1
    # What main holds at each tag is exactly that version: data and plots as LFS (binary), the
    # report page as a regular file.
    for tag, v in (("v1", store["v1"]), ("v2", store["v2"])):
        files = repo.commits[repo.tags[tag]].files
        assert files["manifest.json"].data == (v / "manifest.json").read_bytes()
        for f in _manifest(v)["files"]:
            assert files[f["path"]].sha256 == f["sha256"]
            assert files[f["path"]].lfs == (f["path"] != "report.html"), f["path"]
        card = files["README.md"].data.decode()
        assert REPO in card and "configs:" in card


def test_list_pull_and_load_each_version(hub: LocalHub, client, published, store) -> None:
    to = client.base / "pulled-v2-all"
    outs, _ = client(["list", REPO], ["pull", REPO, "v1", "default", None], ["pull", REPO, "v2", "all", str(to)],
                     ["load", REPO, "default", "v1"], ["load", REPO, "all", "v1"],
                     ["load", REPO, "default", "v2"], ["load", REPO, "all", "v2"], ["table", REPO],
                     ["cli", ["pull", f"{REPO}@v1", "--config", "all", "--to", str(client.base / "cli-pull")]])
    assert all(o["ok"] for o in outs), outs
    listed, pull1, pull2, *loads, table, cli_rc = (o["result"] for o in outs)
    assert cli_rc == 0 and (client.base / "cli-pull/data/all/train-00000-of-00001.parquet").is_file()
    assert "v1" in table and "v2" in table and "tiny/teacher" in table and "18" in table
    assert [v["tag"] for v in listed] == ["v1", "v2"]
    assert listed[0]["rows"] == {"default": 6, "all": 12} and listed[1]["rows"] == {"default": 6, "all": 18}
    assert listed[1]["parent"] == "v1" and listed[1]["teacher"] == "tiny/teacher"
    assert "added 3 prompts" in listed[1]["changes"]

    p1, p2 = Path(pull1), Path(pull2)
    assert p2 == to
    # p1 is the shared HF cache snapshot of v1's commit (the later load_dataset steps fill it too).
    assert (p1 / "data/default/train-00000-of-00001.parquet").is_file() and p1.name == listed[0]["commit"]
    assert sorted(x.relative_to(p2).as_posix() for x in p2.rglob("*.parquet")) == \
        ["data/all/train-00000-of-00001.parquet"]  # one config only
    # The report comes with any config (the card embeds its plots), checked against the manifest.
    assert (p2 / "report.html").is_file() and (p2 / "plots/pass_rate.png").is_file()
    assert (p2 / "manifest.json").read_bytes() == (store["v2"] / "manifest.json").read_bytes()
    assert (p1 / "manifest.json").read_bytes() == (store["v1"] / "manifest.json").read_bytes()

    rows = [x["rows"] for x in loads]
    assert rows == [6, 12, 6, 18]
    assert loads[3]["prompt_ids"] == [f"p{i:03d}" for i in range(9)]  # v2 `all` = v1 rows + 3 prompts


def test_pull_rejects_a_file_that_differs_from_the_manifest(hub: LocalHub, client, published, tmp_path: Path) -> None:
    from tests.support.hubserver import Blob

    repo = hub.repo(REPO)
    commit = repo.commits[repo.tags["v1"]]
    path = "data/default/train-00000-of-00001.parquet"
    good = commit.files[path]
    commit.files[path] = Blob(good.data[:-1] + bytes([good.data[-1] ^ 1]), True)
    try:
        # A fresh HF home: the shared cache already holds the genuine blob and would serve it.
        outs, _ = client(["pull", REPO, "v1", "default", str(tmp_path / "tampered")], home=tmp_path / "hf")
    finally:
        commit.files[path] = good
    assert not outs[0]["ok"] and outs[0]["type"] == "HubIntegrityError"
    assert path in outs[0]["error"] and "sha256" in outs[0]["error"]


def test_failure_mid_upload_or_commit_leaves_no_tag(hub: LocalHub, client, published, store) -> None:
    repo = hub.repo(REPO)
    main_before, n_commits = repo.branches["main"], len(repo.commits)
    v3 = str(store["v3"])
    # 1) the second LFS upload is refused for good (403 from storage: not transient).
    hub.fail("lfs_upload", status=403, times=None, after=1)
    outs, _ = client(["publish", v3, REPO], ["load", REPO, "all", "v2"])
    hub.clear_failures()
    assert not outs[0]["ok"] and outs[0]["type"] == "HubError", outs
    assert "v3" not in repo.tags and repo.branches["main"] == main_before and len(repo.commits) == n_commits
    assert outs[1] == {"ok": True, "result": {"rows": 18, "prompt_ids": [f"p{i:03d}" for i in range(9)]}}

    # 2) the commit call itself fails with 500 on every try: bounded retries, then an error.
    hub.fail("commit", status=500, times=None)
    outs, _ = client(["publish", v3, REPO], ["load", REPO, "default", "v2"])
    n_failed_commits = len([c for c in hub.calls("commit") if c["status"] == 500 and c["repo_id"] == REPO])
    hub.clear_failures()
    assert not outs[0]["ok"] and "gave up after 3 tries" in outs[0]["error"], outs
    assert n_failed_commits == 3
    assert "v3" not in repo.tags and repo.branches["main"] == main_before and len(repo.commits) == n_commits
    assert outs[1]["ok"] and outs[1]["result"]["rows"] == 6

    # 3) a clean retry publishes v3; objects stored by the failed tries are not sent again.
    puts_before = hub.uploaded_oids()
    outs, _ = client(["publish", v3, REPO], ["load", REPO, "default", "v3"])
    assert outs[0]["ok"], outs
    assert repo.tags["v3"] == repo.branches["main"] == outs[0]["result"]["commit"]
    assert outs[1]["result"]["rows"] == _manifest(store["v3"])["configs"]["default"]["rows"]
    assert hub.uploaded_oids() == puts_before  # both v3 objects were already stored by tries 1) and 2)


def test_publishing_the_same_version_twice_makes_no_second_version(hub: LocalHub, client, published, store) -> None:
    repo = hub.repo(REPO)
    tags, n_commits = dict(repo.tags), len(repo.commits)
    outs, _ = client(["publish", str(store["v2"]), REPO], ["cli", ["publish", str(store["v1"]), "--repo", REPO]])
    assert outs[0]["ok"] and outs[0]["result"]["already"], outs
    assert "already published" in outs[0]["result"]["message"]
    assert outs[1] == {"ok": True, "result": 0}
    assert repo.tags == tags and len(repo.commits) == n_commits


def test_transient_errors_are_retried(hub: LocalHub, client, store) -> None:
    repo_id = "org/retry"
    start = len(hub.requests)
    hub.state.lfs.clear()  # storage is shared across repos: make the PUTs happen (commits keep their bytes)
    hub.fail("refs", status=0, times=1)  # connection closed without an answer
    hub.fail("commit", status=500, times=1)
    hub.fail("tag", status=429, times=1)
    hub.fail("lfs_upload", status=503, times=1)  # huggingface_hub's own backoff covers the PUT
    try:
        outs, proc = client(["publish", str(store["v1"]), repo_id])
    finally:
        hub.clear_failures()
    assert outs[0]["ok"], outs
    repo = hub.repo(repo_id)
    assert repo.tags["v1"] == repo.branches["main"] == outs[0]["result"]["commit"]
    seen = hub.requests[start:]
    for op, status in (("refs", 0), ("commit", 500), ("tag", 429), ("lfs_upload", 503)):
        statuses = [c["status"] for c in seen if c["op"] == op]
        assert status in statuses and 200 in statuses, (op, statuses)
    assert sum(1 for c in seen if c["op"] == "commit" and c["status"] == 200) == 1
    assert len(repo.commits) == 2  # the initial commit + v1: a retried commit is not made twice


def test_auth_errors_stop_with_what_to_do(hub: LocalHub, client, store) -> None:
    wrong = "hf_" + secrets.token_hex(17)
    outs, proc = client(["publish", str(store["v1"]), "org/auth"],
                        ["cli", ["publish", str(store["v1"]), "--repo", "org/auth"]], token=wrong)
    assert not outs[0]["ok"] and outs[0]["type"] == "HubAuthError"
    for text in (outs[0]["error"], proc.stderr):
        assert "huggingface-cli login" in text and "HF_TOKEN" in text and "write access to org" in text
    assert outs[1] == {"ok": True, "result": 2}
    assert wrong not in proc.stdout + proc.stderr
    # No retry of an auth failure: one refused create_repo per attempt.
    assert len([c for c in hub.calls("create_repo") if c["status"] == 401]) == 2

    outs, proc = client(["publish", str(store["v1"]), "org/auth"], token=READ_TOKEN)
    assert outs[0]["type"] == "HubAuthError" and "no write access to org" in outs[0]["error"], outs
    assert ("dataset", "org/auth") not in hub.state.repos


def test_token_appears_in_no_file_and_no_log(hub: LocalHub, client, store, tmp_path: Path) -> None:
    home = tmp_path / "hf_home"
    repo_id = "org/secret"
    hub.fail("commit", status=502, times=1)  # a retried error's log line too
    try:
        outs, proc = client(["publish", str(store["v1"]), repo_id], ["publish", str(store["v2"]), repo_id],
                            ["list", repo_id], ["pull", repo_id, "v2", None, str(tmp_path / "pulled")],
                            ["load", repo_id, "all", "v1"], ["publish", str(store["v1"]), "other/denied"],
                            token=TOKEN, debug=True, home=home)
    finally:
        hub.clear_failures()
    assert [o["ok"] for o in outs] == [True, True, True, True, True, False], outs
    assert "DEBUG" in proc.stderr and "transient error" in proc.stderr  # logs were really captured
    assert "403" in outs[-1]["error"] or "write access" in outs[-1]["error"]
    assert TOKEN not in proc.stdout and TOKEN not in proc.stderr

    needle = TOKEN.encode()
    scanned = 0
    for root in (home, tmp_path, client.base, store["v1"].parent):
        for p in root.rglob("*"):
            if p.is_file() and not p.is_symlink():
                scanned += 1
                assert needle not in p.read_bytes(), p
    assert scanned > 10
    # Nor in what was published.
    for c in hub.repo(repo_id).commits.values():
        for path, blob in c.files.items():
            assert needle not in blob.data, path


def test_files_the_new_version_lacks_are_deleted_from_main(hub: LocalHub, client, store) -> None:
    from tests.support.hubserver import GITATTRIBUTES, Blob, Repo

    # A repo whose main holds an older layout: a data file the new version does not have.
    repo = Repo(repo_type="dataset", repo_id="org/layout", private=False, created_at="2024-01-01T00:00:00Z")
    stale = "data/default/train-00000-of-00002.parquet"
    old_manifest = json.dumps({"version": "v0", "files": [{"path": stale, "sha256": "0" * 64}]}).encode()
    c = hub.state.new_commit(repo, {".gitattributes": Blob(GITATTRIBUTES, False), stale: Blob(b"PAR1old", True),
                                    "notes/keep.txt": Blob(b"mine", False), "manifest.json": Blob(old_manifest, False)},
                             None, "old layout")
    repo.branches["main"] = c.oid
    hub.state.repos[("dataset", "org/layout")] = repo
    outs, _ = client(["publish", str(store["v1"]), "org/layout"])
    assert outs[0]["ok"], outs
    assert outs[0]["result"]["deleted"] == [stale]
    files = repo.commits[repo.branches["main"]].files
    assert stale not in files and "notes/keep.txt" in files  # only stale data goes; other files stay
    assert sorted(p for p in files if p.startswith("data/")) == sorted(
        f["path"] for f in _manifest(store["v1"])["files"] if f["path"].startswith("data/"))
    assert all(f["path"] in files for f in _manifest(store["v1"])["files"])  # the report files too


def test_a_hub_source_is_identified_by_its_commit(hub: LocalHub, client, published) -> None:
    """A run reading a Hub dataset records the commit it read (with subset and split), so a resume
    after the dataset moved on refuses instead of mixing; a tag resolves to its commit."""
    outs, _ = client(["source", REPO, "v1"], ["source", REPO, "v2"], ["list", REPO])
    assert all(o["ok"] for o in outs), outs
    v1, v2, versions = outs[0]["result"], outs[1]["result"], outs[2]["result"]
    commits = {v["tag"]: v["commit"] for v in versions}
    assert v1["identity"] == {"kind": "hub", "name": REPO, "revision": commits["v1"], "subset": "all", "split": "train"}
    assert v2["identity"]["revision"] == commits["v2"] != commits["v1"]
    assert v1["prompts"] == 6 and v2["prompts"] == 9
