"""`factory submit --slurm` on a real one-node Slurm cluster (tests/support/slurm.py), jobs that run
the real vLLM engine (SmolLM2, 8-16 prompts, one sample of 64 tokens), publishing to the test Hub.

One cluster, one Hub server and one dataset for the whole module; the tests run in order and
build on each other's versions (v1 by a one-off job, v2 and v3 by a schedule's firings), so that
the module starts the engine four times in all:

1. a one-off job makes v1; squeue shows it, scontrol and the job-completion log show how it ended,
   its log is where `factory submit` says;
2. a job whose config is broken fails in seconds, before any engine starts;
3. a weekly schedule (cron "0 3 * * 1"): each firing first submits the next. Firings are brought
   forward with `scontrol update JobId=N StartTime=now` (what a user does to run the next one now)
   so the test waits for no Monday. A firing that overlaps a running one skips at the dataset lock;
   a firing cancelled mid-run is resumed by the next (nothing lost, nothing twice); every firing
   with new prompts makes an incremental version published with its tag; one with none makes none.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from factory.cluster.schedule import next_fire
from factory.sources.builtin import arithmetic
from factory.store.layout import RUNS_DIR
from factory.store.parts import RunDir
from tests.support.hubserver import LocalHub
from tests.support.slurm import SlurmCluster, ensure_installed, slurm_cluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOKEN = "hf_" + secrets.token_hex(17)
REPO = "org/slurm-it"
PROBLEMS = arithmetic(40)
JOB_S = 420  # one vLLM job: ~90 s alone on 2 cores; room for a loaded machine


@dataclass
class Site:
    """The submitting user's folder: config, growing input, store, logs; and the clients' environment."""

    slurm: SlurmCluster
    hub: LocalHub
    dir: Path
    env: dict[str, str]

    @property
    def store(self) -> Path:
        return self.dir / "store" / "it"

    def factory(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "factory.cli", *args], cwd=self.dir, env=env or self.env,
                              capture_output=True, text=True, timeout=120)

    def submit(self, *args: str, config: str = "run.yaml", env: dict[str, str] | None = None) -> str:
        proc = self.factory("submit", config, "--slurm", "--nodes", "1", "--gpus-per-worker", "0",
                            # the template asks for whole nodes; these tests share one 2-core node
                            "--sbatch-arg=--oversubscribe", *args, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return re.search(r"submitted Slurm job (\d+)", proc.stdout).group(1)

    def add_problems(self, count: int) -> None:
        path = self.dir / "problems.jsonl"
        have = len(path.read_text().splitlines()) if path.exists() else 0
        with path.open("a") as f:
            for row in PROBLEMS[have:have + count]:
                f.write(json.dumps(row) + "\n")

    def log(self, job_id: str, name: str = "it") -> str:
        path = self.dir / "factory-slurm" / f"{name}-{job_id}.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def versions(self) -> list[str]:
        return sorted(p.name for p in self.store.glob("v*") if p.is_dir())

    def rows(self, version: str) -> list[tuple[str, int]]:
        keys = []
        for f in sorted((self.store / version / "data" / "all").glob("*.parquet")):
            t = pq.read_table(f, columns=["prompt_id", "sample_index"])
            keys += list(zip(t["prompt_id"].to_pylist(), t["sample_index"].to_pylist()))
        return keys


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    reason = ensure_installed()
    if reason:
        pytest.skip(reason)
    root = Path(os.environ.get("FACTORY_SLURM_TMP", "/tmp")) / f"fslurm-{secrets.token_hex(3)}"
    work = tmp_path_factory.mktemp("slurm-site")
    config = {
        "source": {"path": "problems.jsonl", "columns": {"problem": "problem", "reference": "answer"}},
        "teacher": {"engine": "vllm", "model": "builtin:smollm2-135m-instruct", "max_model_len": 512,
                    # four at a time, so a run of 16 prompts commits its shards one after another
                    "max_num_seqs": 4},
        "sampling": {"n": 1, "max_tokens": 64, "temperature": 0.6, "seed": 0},
        "verifiers": [{"name": "truncation"}, {"name": "math", "extraction": "last_number"}],
        # a part per shard (no gathering for a minute), so a cancelled run leaves several behind
        "run": {"shard_size": 2, "part_seconds": 0, "progress": False},
        "output": {"store": "store", "name": "it"},
        "publish": {"repo": REPO},
    }
    (work / "run.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with LocalHub(token=TOKEN) as hub, slurm_cluster(root) as slurm:
        env = dict(slurm.env, **hub.env(str(work / "hf"), token=TOKEN), PYTHONUNBUFFERED="1",
                   PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0")
        env.pop("HF_HUB_OFFLINE", None)
        env.pop("HF_DATASETS_OFFLINE", None)
        env.pop("RAY_ADDRESS", None)
        yield Site(slurm, hub, work, env)
        leftovers = slurm.job_pids(settle_s=30)
    shutil.rmtree(root, ignore_errors=True)
    assert leftovers == [], f"processes of finished jobs still running: {leftovers}"


def test_submit_runs_generate_as_a_slurm_job(site: Site) -> None:
    site.add_problems(8)
    job = site.submit()
    seen = set()
    deadline = time.monotonic() + JOB_S
    while (state := site.slurm.state(job)) in {"PENDING", "RUNNING", "CONFIGURING", "UNKNOWN"}:
        seen |= {q["state"] for q in site.slurm.squeue() if q["id"] == job}
        assert time.monotonic() < deadline, site.log(job)[-3000:]
        time.sleep(2)
    assert "RUNNING" in seen  # squeue showed the job while it ran
    log = site.log(job)  # where `factory submit` said: factory-slurm/NAME-JOBID.out
    info = site.slurm.job(job)
    assert (state, info["ExitCode"]) == ("COMPLETED", "0:0"), log[-4000:]
    assert "1 node, no Ray cluster to start" in log and "factory generate exited with 0" in log
    assert site.versions() == ["v1"]
    assert len(site.rows("v1")) == 8
    assert [c["JobState"] for c in site.slurm.completions() if c["JobId"] == job] == ["COMPLETED"]
    assert list(site.hub.repo(REPO).tags) == ["v1"]
    assert TOKEN not in log


def test_broken_config_fails_in_seconds_with_the_message_in_the_log(site: Site) -> None:
    broken = site.dir / "broken.yaml"
    cfg = yaml.safe_load((site.dir / "run.yaml").read_text())
    cfg["sampling"]["temprature"] = 0.7  # a typo: unknown keys are errors
    broken.write_text(yaml.safe_dump(cfg))
    # The rendered script, run by hand with another config (as after an edit to a scheduled run's config).
    proc = site.slurm.run("sbatch", "--parsable", "--oversubscribe", str(site.dir / "factory-slurm" / "it.sbatch"),
                          env={**site.env, "FACTORY_CONFIG": str(broken)}, cwd=site.dir)
    job = proc.stdout.strip()
    info = site.slurm.wait(job, {"FAILED", "COMPLETED"}, timeout_s=120)
    log = site.log(job)
    assert (info["JobState"], info["ExitCode"]) == ("FAILED", "2:0"), log
    took = datetime.fromisoformat(info["EndTime"]) - datetime.fromisoformat(info["StartTime"])
    assert took.total_seconds() < 30, info
    assert "temprature" in log and "nothing was started" in log
    assert "vllm" not in log.lower()  # no engine started
    assert site.versions() == ["v1"]


def _generate_holds_lock(site: Site) -> bool:
    """The lock file names its holder while held; the holder must be `factory generate` (not the
    preflight, which holds it for an instant)."""
    try:
        pid = json.loads((site.store / ".lock").read_text() or "{}").get("pid")
        return pid is not None and b"generate" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False


def _open_run(site: Site) -> RunDir | None:
    """The run a firing is writing: the newest under .runs that no version was made from yet."""
    runs = [p for p in (site.store / RUNS_DIR).glob("*") if (p / "run.json").is_file()]
    runs = [p for p in runs if not json.loads((p / "run.json").read_text()).get("published")]
    return RunDir(max(runs, key=lambda p: p.stat().st_mtime)) if runs else None


def _ray_ports() -> list[str]:
    """Ports of their own for the job's Ray head: other Ray clusters may run on this machine."""
    socks = []
    for _ in range(9):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    lo = random.randrange(20000, 31000)
    return [f"--node-manager-port={ports[0]}", f"--object-manager-port={ports[1]}",
            f"--dashboard-agent-listen-port={ports[2]}", f"--dashboard-agent-grpc-port={ports[3]}",
            f"--runtime-env-agent-port={ports[4]}", f"--metrics-export-port={ports[5]}",
            f"--ray-client-server-port={ports[6]}", f"--min-worker-port={lo}", f"--max-worker-port={lo + 99}",
            f"--port={ports[7]}", f"--dashboard-port={ports[8]}"]


def test_the_ray_cluster_path_runs_under_srun(site: Site) -> None:
    """The several-node path of the script, on one node (FACTORY_RAY_CLUSTER=always): the Ray head
    in a real `srun` step, `factory generate` against it, and Ray gone with the job. The scripted
    engine: this is about the script's Ray, not the teacher."""
    cfg = yaml.safe_load((site.dir / "run.yaml").read_text())
    cfg["teacher"] = {"engine": "scripted", "engine_kwargs": {"default": "It is \\boxed{9}"}}
    cfg["output"]["name"] = "ray"
    cfg["source"]["path"] = "ray.jsonl"
    cfg.pop("publish")
    (site.dir / "ray.jsonl").write_text("".join(json.dumps(row) + "\n" for row in PROBLEMS[:4]))
    (site.dir / "ray.yaml").write_text(yaml.safe_dump(cfg))
    ray_tmp = f"/tmp/fsr{secrets.token_hex(3)}"  # short: Ray's socket paths must stay under 107 bytes
    ports = _ray_ports()
    port, dashboard = ports[-2].split("=")[1], ports[-1].split("=")[1]
    env = {**site.env, "FACTORY_RAY_CLUSTER": "always",
           "RAY_HEAD_IP": "127.0.0.1", "RAY_PORT": port, "RAY_DASHBOARD_PORT": dashboard, "RAY_TMPDIR": ray_tmp,
           "RAY_NODE_TIMEOUT": "120", "RAY_HEAD_ARGS": " ".join(ports[:-2]), "RAY_AUTH_MODE": "disabled"}
    try:
        job = site.submit(config="ray.yaml", env=env)
        info = site.slurm.wait(job, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, timeout_s=240)
        log = site.log(job, "ray")
        assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), log[-5000:]
        assert f"Ray head 127.0.0.1:{port}" in log and "1 Ray node(s) up" in log
        assert "factory generate exited with 0" in log
        assert (site.dir / "store" / "ray" / "v1").is_dir()
        # The EXIT trap stopped the srun step, and Ray with it.
        assert site.slurm.job_pids(settle_s=30) == []
        assert not [p for p in Path("/proc").glob("[0-9]*") if ray_tmp.encode() in _cmdline(p)]
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def _fire_now(site: Site, job: str) -> None:
    site.slurm.run("scontrol", "update", f"JobId={job}", "StartTime=now")


def _next_firing(site: Site, job: str, timeout_s: float = 120) -> str:
    """The firing a running firing submitted first thing, read from its log."""
    deadline = time.monotonic() + timeout_s
    while not (m := re.search(r"next firing is job (\d+) at (\S+)", site.log(job))):
        assert time.monotonic() < deadline, site.log(job)[-3000:]
        assert site.slurm.state(job) in {"PENDING", "RUNNING", "CONFIGURING"}, site.log(job)[-3000:]
        time.sleep(1)
    nxt, begin = m.group(1), m.group(2)
    pending = site.slurm.job(nxt)
    assert pending["JobState"] == "PENDING" and pending["Reason"] == "BeginTime", pending
    assert pending["StartTime"] == begin, pending
    return nxt


def test_schedule_fires_overlaps_resumes_and_grows(site: Site) -> None:
    schedule = "0 3 * * 1"  # Mondays 03:00
    site.add_problems(16)  # 24 in the file, 8 of them in v1
    first = site.submit("--schedule", schedule)
    info = site.slurm.job(first)
    assert info["Reason"] == "BeginTime"
    assert info["StartTime"] == next_fire(schedule, datetime.now()).strftime("%Y-%m-%dT%H:%M:%S")

    # Firing 1 runs; its successor, pulled forward while it runs, finds the dataset locked and skips.
    _fire_now(site, first)
    second = _next_firing(site, first)
    deadline = time.monotonic() + 120
    while not _generate_holds_lock(site):
        assert time.monotonic() < deadline and site.slurm.state(first) == "RUNNING", site.log(first)[-3000:]
        time.sleep(0.5)
    _fire_now(site, second)
    done = site.slurm.wait(second, {"COMPLETED", "FAILED"}, timeout_s=120)
    log2 = site.log(second)
    assert (done["JobState"], done["ExitCode"]) == ("COMPLETED", "0:0"), log2
    assert "another run is writing 'it'" in log2 and "this run skips" in log2
    third = _next_firing(site, second)  # a skipped firing still keeps the schedule going

    # Firing 1 is cancelled once some of its shards are committed, before all of them are.
    deadline = time.monotonic() + JOB_S
    while not (run := _open_run(site)) or not run.committed_shards():
        assert time.monotonic() < deadline and site.slurm.state(first) in {"RUNNING", "PENDING"}, site.log(first)[-3000:]
        time.sleep(0.5)
    site.slurm.run("scancel", first)
    site.slurm.wait(first, {"CANCELLED"}, timeout_s=60)
    assert site.slurm.job_pids(settle_s=60) == []  # its engine went with it
    committed_shards, committed = len(run.committed_shards()), run.committed_keys()
    assert 0 < committed_shards < 8, f"the cancel should land mid-run: {committed_shards} of 8 shards committed"
    assert site.versions() == ["v1"]

    # Firing 3 resumes the cancelled run: v2 holds v1's rows and the 16 new, each once.
    _fire_now(site, third)
    fourth = _next_firing(site, third)
    done = site.slurm.wait(third, {"COMPLETED", "FAILED"}, timeout_s=JOB_S)
    log3 = site.log(third)
    assert done["ExitCode"] == "0:0", log3[-4000:]
    assert f"{committed_shards} of 8 shards already committed" in log3
    assert site.versions() == ["v1", "v2"]
    rows = site.rows("v2")
    assert len(rows) == len(set(rows)) == 24
    assert set(site.rows("v1")) <= set(rows)
    assert committed <= set(rows)

    # Firing 4: four more prompts make v3; firing 5 finds nothing new and makes nothing.
    site.add_problems(4)
    _fire_now(site, fourth)
    fifth = _next_firing(site, fourth)
    done = site.slurm.wait(fourth, {"COMPLETED", "FAILED"}, timeout_s=JOB_S)
    assert done["ExitCode"] == "0:0", site.log(fourth)[-4000:]
    assert site.versions() == ["v1", "v2", "v3"]
    assert len(site.rows("v3")) == 28
    manifest = json.loads((site.store / "v3" / "manifest.json").read_text())
    assert manifest["parent"] == "v2" and manifest["changelog"][-1]["added_prompts"] == 4, manifest["changelog"]

    _fire_now(site, fifth)
    sixth = _next_firing(site, fifth)
    done = site.slurm.wait(fifth, {"COMPLETED", "FAILED"}, timeout_s=JOB_S)
    assert done["ExitCode"] == "0:0", site.log(fifth)[-4000:]
    assert "no new version" in site.log(fifth)
    assert site.versions() == ["v1", "v2", "v3"]
    repo = site.hub.repo(REPO)
    assert sorted(repo.tags) == ["v1", "v2", "v3"] and repo.resolve("main") is repo.resolve("v3")

    # Stopping the schedule: cancel the pending firing.
    site.slurm.run("scancel", sixth)
    site.slurm.wait(sixth, {"CANCELLED"}, timeout_s=30)
    assert site.slurm.squeue() == []
    for job in (first, second, third, fourth, fifth):
        assert TOKEN not in site.log(job)
