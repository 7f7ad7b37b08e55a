"""`factory generate` and `factory submit` on a real multi-node Ray cluster, all on this host.

Three Ray nodes (a head and two workers, one CPU each; the workers announce two logical GPUs each,
`--num-gpus=2`, which Ray accepts without any GPU) are started with `ray start` on loopback, each
with its own temp dir and ports. The scripted engine runs one replica per node (3 replicas x 1 CPU
on 3 one-CPU nodes), so spreading is forced by resources, and checked by node id through Ray's
state API: every node has the same hostname here. With `engine_kwargs: {gpu: true}` the scripted
engine stands in for vLLM, so multi-GPU replicas get placement groups across the two GPU nodes,
checked bundle by bundle through the state API. The same cluster's job server runs
`factory submit`. (deploy/slurm/factory.sbatch runs on a real one-node Slurm: tests/integration/test_slurm.py.)

Only processes started here are stopped (by process group, then by pid for anything that carries
this test's temp dir in its command line); `ray stop` would kill every Ray on the machine.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # ray, factory and python of this environment
SECRET = "hf_multinodeTestSecret0123456789"  # the submitter's token: must never reach the job server
CLUSTER_TOKEN = "cluster-side-token-value"  # what the cluster's own environment holds
GPUS_PER_WORKER = 2  # logical GPUs on nodes b and c (none on the head)


# --- a local multi-node cluster --------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("", port))
            return True
        except OSError:
            return False


# Every port handed out here: Ray refuses a node whose ports overlap (a component's port inside
# its worker range), and nodes on one host must not share ports either.
_TAKEN: set[int] = set()


def _free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        if port not in _TAKEN:
            _TAKEN.add(port)
            return port


def _free_range(size: int = 100) -> tuple[int, int]:
    """A block of free ports for one raylet's workers."""
    for _ in range(200):
        lo = random.randrange(20000, 32000 - size)  # below the usual ephemeral range (32768+)
        ports = range(lo, lo + size)
        if _TAKEN.isdisjoint(ports) and all(_port_free(p) for p in ports):
            _TAKEN.update(ports)
            return lo, lo + size - 1
    raise RuntimeError("no free port range for Ray workers")


def _node_ports() -> list[str]:
    lo, hi = _free_range()
    return [f"--node-manager-port={_free_port()}", f"--object-manager-port={_free_port()}",
            f"--min-worker-port={lo}", f"--max-worker-port={hi}",
            f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}", f"--metrics-export-port={_free_port()}"]


def _cluster_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", RAY_AUTH_MODE="disabled",
               RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1", **extra)
    return env


def _leftovers(marker: str) -> list[int]:
    """Processes whose command line names `marker` (this test's temp root): ours, and only ours."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def _stop(procs: list[subprocess.Popen], marker: str, grace_s: float = 15.0) -> None:
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)  # `ray start --block` stops its node's processes on SIGTERM
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and (any(p.poll() is None for p in procs) or _leftovers(marker)):
        time.sleep(0.5)
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=10)
    for pid in _leftovers(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class Cluster:
    gcs: str  # 127.0.0.1:PORT, for RAY_ADDRESS
    dashboard: str  # http://127.0.0.1:PORT, the job server and state API
    env: dict[str, str]
    root: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def start_node(self, name: str, args: list[str]) -> None:
        log = open(self.root / f"{name}.log", "w")
        self.procs.append(subprocess.Popen(
            [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", "--num-cpus=1",
             f"--temp-dir={self.root / name}", f'--resources={{"node_{name}": 1}}', *args, *_node_ports()],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def alive_nodes(self) -> list[Any]:
        from ray.util.state import list_nodes

        return [n for n in list_nodes(address=self.dashboard) if n.state == "ALIVE"]

    def wait_nodes(self, count: int, timeout_s: float = 150.0) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        nodes: list[Any] = []
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a Ray node exited early:\n{self.logs()}")
            try:
                nodes = self.alive_nodes()
            except Exception:  # the dashboard is still starting
                nodes = []
            if len(nodes) >= count:
                return nodes
            time.sleep(1.0)
        raise RuntimeError(f"{len(nodes)} of {count} Ray nodes came up in {timeout_s:.0f}s:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(self.root.glob("*.log")))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # Short paths: Ray's Unix socket paths (temp dir + session + name) must stay under 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="fmn", dir="/tmp"))
    port, dash = _free_port(), _free_port()
    c = Cluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}", _cluster_env(HF_TOKEN=CLUSTER_TOKEN), root)
    try:
        c.start_node("a", ["--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--include-dashboard=true",
                           "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
                           f"--ray-client-server-port={_free_port()}"])
        _wait_port(port, c)  # workers can join once the head's GCS listens
        for name in ("b", "c"):
            c.start_node(name, [f"--address={c.gcs}", f"--num-gpus={GPUS_PER_WORKER}"])
        c.wait_nodes(3)
        yield c
    finally:
        _stop(c.procs, str(root), grace_s=5)  # nothing to save: a short grace, then SIGKILL
        shutil.rmtree(root, ignore_errors=True)


def _wait_port(port: int, c: Cluster, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in c.procs):
            raise RuntimeError(f"the Ray head exited early:\n{c.logs()}")
        with socket.socket() as s:
            s.settimeout(1.0)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise RuntimeError(f"the Ray head's GCS did not listen on {port} within {timeout_s:.0f}s:\n{c.logs()}")


# --- configs -----------------------------------------------------------------------------------


def _write_config(path: Path, store: Path, replicas: int | str = 3, teacher: dict[str, Any] | None = None,
                  run: dict[str, Any] | None = None, gpu: bool = False, poison: bool = False) -> Path:
    """12 prompts x 2 samples. `gpu`: the scripted engine stands in for a GPU engine (replicas take
    GPUs, tensor x pipeline parallel ones a placement group); `poison`: the first prompt's answer
    ends the process of the replica that gets it."""
    from factory.sources.builtin import arithmetic

    rows = arithmetic()[:12]
    answers = {r["problem"]: f"So \\boxed{{{r['answer']}}}" for r in rows}
    if poison:
        answers[rows[0]["problem"]] = "!exit"
    data = {
        "source": {"builtin": "arithmetic", "limit": 12},
        "teacher": {"engine": "scripted", "replicas": replicas, "max_num_seqs": 1,
                    "engine_kwargs": {"answers": answers, "delay_s": 0.05, "gpu": gpu}, **(teacher or {})},
        "sampling": {"n": 2, "max_tokens": 50},
        # One shard in flight per replica, so every replica gets work.
        "run": {"shard_size": 1, "inflight_factor": 1.0, "verify_workers": 1, "progress": False, **(run or {})},
        "output": {"store": str(store), "name": "mn"},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def _manifest(store: Path, version: str = "v1") -> dict[str, Any]:
    return json.loads((store / "mn" / version / "manifest.json").read_text())


def _factory(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "factory.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _replica_actors(cluster: Cluster) -> dict[str, Any]:
    from ray.util.state import list_actors

    actors = list_actors(address=cluster.dashboard, filters=[("class_name", "=", "EngineReplica")], limit=1000)
    return {a.actor_id: a for a in actors}


# --- tests -------------------------------------------------------------------------------------


def test_generate_spreads_replicas_over_nodes(cluster: Cluster, tmp_path: Path) -> None:
    store = tmp_path / "store"
    config = _write_config(tmp_path / "run.yaml", store)
    before = set(_replica_actors(cluster))
    env = _cluster_env(RAY_ADDRESS=cluster.gcs)
    proc = _factory(["generate", str(config)], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    manifest = _manifest(store)
    assert manifest["counts"]["accepted"] == 24 and manifest["counts"]["rejected"] == 0
    teacher = manifest["teacher"]
    assert teacher["replicas"] == 3
    assert teacher["nodes"] == [os.uname().nodename]  # one host: the hostname cannot tell nodes apart...
    # ...so the node ids tell: the run's three replicas sat on the three nodes, one each.
    ours = [a for aid, a in _replica_actors(cluster).items() if aid not in before]
    assert len(ours) == 3, ours
    node_ids = {a.node_id for a in ours}
    assert node_ids == {n.node_id for n in cluster.alive_nodes()}
    assert set(teacher["node_ids"]) == node_ids  # what the replicas reported themselves


def _node_names(cluster: Cluster) -> dict[str, str]:
    """Node id -> the name the node was started under (its custom resource `node_NAME`)."""
    return {n.node_id: key.removeprefix("node_") for n in cluster.alive_nodes()
            for key in n.resources_total if key.startswith("node_")}


def _placement_groups(cluster: Cluster) -> dict[str, Any]:
    from ray.util.state import list_placement_groups

    return {p.placement_group_id: p for p in list_placement_groups(address=cluster.dashboard, detail=True, limit=1000)}


def _bundle_nodes(pg: Any, names: dict[str, str]) -> list[str]:
    """The node name of each bundle, in bundle order."""
    return [names[b["node_id"]] for b in sorted(pg.bundles, key=lambda b: b["bundle_id"]["bundle_index"])]


def _generate_gpu(cluster: Cluster, tmp_path: Path, **config: Any) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """`factory generate` with GPU replicas: (manifest, the run's placement groups, its replica actors)."""
    store = tmp_path / "store"
    # Placing a group takes milliseconds here: one that cannot be placed fails the run, saying why.
    config["run"] = {"placement_timeout_s": 60, **config.get("run", {})}
    path = _write_config(tmp_path / "run.yaml", store, replicas="auto", gpu=True, **config)
    actors, groups = set(_replica_actors(cluster)), set(_placement_groups(cluster))
    proc = _factory(["generate", str(path)], _cluster_env(RAY_ADDRESS=cluster.gcs), timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    new_groups = {k: v for k, v in _placement_groups(cluster).items() if k not in groups}
    return _manifest(store), new_groups, [a for k, a in _replica_actors(cluster).items() if k not in actors]


def test_pipeline_parallel_replica_spans_gpu_nodes(cluster: Cluster, tmp_path: Path) -> None:
    manifest, groups, actors = _generate_gpu(cluster, tmp_path,
                                             teacher={"tensor_parallel_size": 2, "pipeline_parallel_size": 2})
    assert manifest["counts"]["accepted"] == 24 and manifest["counts"]["rejected"] == 0
    teacher = manifest["teacher"]
    assert teacher["replicas"] == 1  # auto: 4 GPUs // world size 4
    assert teacher["placement"]["strategy"] == "PACK"
    assert teacher["placement"]["bundles"] == [{"GPU": 1, "CPU": 1}] + [{"GPU": 1}] * 3
    assert list(groups) == teacher["placement_groups"]  # what the replica saw inside its actor
    (pg,) = groups.values()
    names = _node_names(cluster)
    bundles = _bundle_nodes(pg, names)
    assert sorted(bundles) == ["b", "b", "c", "c"]  # 4 GPUs of one replica over both GPU nodes
    (actor,) = actors
    assert names[actor.node_id] == bundles[0]  # the replica itself sits in bundle 0
    assert teacher["node_ids"] == [actor.node_id]
    assert pg.state == "REMOVED"


def test_tensor_parallel_replicas_keep_to_a_node_and_are_replaced(cluster: Cluster, tmp_path: Path) -> None:
    # TP=2 on 2-GPU nodes: each replica's group holds a whole node. The poison prompt ends a
    # replica twice (no retries: once as part of its shard, once alone); each replacement can be
    # placed only if the group of the replica it replaces was removed, else the run hangs.
    manifest, groups, actors = _generate_gpu(cluster, tmp_path, teacher={"tensor_parallel_size": 2}, poison=True,
                                             run={"max_shard_retries": 0, "max_prompt_retries": 0})
    assert manifest["counts"]["accepted"] == 22 and manifest["counts"]["rejected"] == 2  # the poison's 2
    teacher = manifest["teacher"]
    assert teacher["replicas"] == 2  # auto: one per node
    assert teacher["placement"]["strategy"] == "STRICT_PACK"
    assert teacher["placement"]["bundles"] == [{"GPU": 1, "CPU": 1}, {"GPU": 1}]
    names = _node_names(cluster)
    first = [set(_bundle_nodes(groups[pid], names)) for pid in teacher["placement_groups"]]
    assert sorted(map(sorted, first)) == [["b"], ["c"]]  # each group on one node; the two on different nodes
    assert len(groups) == 4 and len(actors) == 4  # 2 first replicas + 2 replacements, one group each
    assert {pg.state for pg in groups.values()} == {"REMOVED"}


def test_submit_runs_generate_as_a_ray_job(cluster: Cluster, tmp_path: Path) -> None:
    from ray.job_submission import JobSubmissionClient

    store = tmp_path / "store"
    here = tmp_path / "here"
    here.mkdir()
    config = _write_config(here / "run.yaml", Path("unused"), replicas="auto")
    env = _cluster_env(HF_TOKEN=SECRET)
    env.pop("RAY_ADDRESS", None)
    proc = _factory(["submit", str(config), "--address", cluster.dashboard, "--wait", "--incremental",
                     "--set", f"output.store={store}", "--set", "teacher.replicas=2"], env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert SECRET not in out
    job_id = next(line.split()[2] for line in proc.stdout.splitlines() if line.startswith("submitted job "))
    assert f"ray job logs -f {job_id}" in proc.stdout
    assert "version:" in proc.stdout  # generate's own summary, streamed from the job's logs
    assert _manifest(store)["teacher"]["replicas"] == 2

    client = JobSubmissionClient(cluster.dashboard)
    info = client.get_job_info(job_id)
    assert info.status == "SUCCEEDED"
    assert info.entrypoint == "factory generate run.yaml --no-progress --incremental"
    assert info.runtime_env["env_vars"]["HF_TOKEN"] == "${HF_TOKEN}"
    assert SECRET not in json.dumps(info.runtime_env) + json.dumps(info.metadata or {})

    # Passed by name, the job sees the cluster's own HF_TOKEN, not the submitter's.
    from factory.commands.submit import job_env

    check = ("import os, sys; v = os.environ.get('HF_TOKEN'); "
             f"sys.exit(0 if v == {CLUSTER_TOKEN!r} else 3)")
    jid = client.submit_job(entrypoint=f"python -c \"{check}\"", runtime_env={"env_vars": job_env([])})
    assert _wait_job(client, jid) == "SUCCEEDED", client.get_job_logs(jid)

    # --wait returns the job's exit status: generate exits 2 on a config error found on the cluster.
    proc = _factory(["submit", str(config), "--address", cluster.dashboard, "--wait",
                     "--set", f"output.store={store}", "--set", "source.builtin=null",
                     "--set", "source.path=/nonexistent/problems.jsonl"], env)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "/nonexistent/problems.jsonl does not exist" in proc.stdout + proc.stderr


def _wait_job(client: Any, job_id: str, timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    while (status := str(client.get_job_status(job_id))) not in {"SUCCEEDED", "FAILED", "STOPPED"}:
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {status} after {timeout_s}s")
        time.sleep(0.5)
    return status


def test_kuberay_cronjob_run_as_a_ray_job(cluster: Cluster, tmp_path: Path) -> None:
    """No Kubernetes here: what the CronJob's RayJob runs on its head pod runs on this Ray cluster.

    The CronJob's pod only does `kubectl create -f /manifests/rayjob.yaml`, the RayJob manifest the
    rendered output carries in a ConfigMap; KubeRay then runs that manifest's entrypoint on the head.
    That entrypoint runs here verbatim, as a Ray job, with the head pod's two volumes as folders:
    the config's ConfigMap (run.yaml as `--render configmap` writes it) and the store's PVC. Twice,
    as two weekly firings: the first makes v1, the second (incremental, nothing new) makes none.
    """
    from ray.job_submission import JobSubmissionClient

    from factory.cluster.templates import DeployParams, render_configmap, render_cronjob
    from factory.config import load_config

    source = _write_config(tmp_path / "source.yaml", Path("unused"), replicas=2)
    params = DeployParams(image="ghcr.io/org/factory:test", config_mount=str(tmp_path / "configs"),
                          store_mount=str(tmp_path / "pvc"))
    docs = list(yaml.safe_load_all(render_cronjob(params)))
    cron = next(d for d in docs if d["kind"] == "CronJob")
    script = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "kubectl create" in script and "-f /manifests/rayjob.yaml" in script
    rayjob = yaml.safe_load(next(d for d in docs if d.get("metadata", {}).get("name") == "factory-rayjob")
                            ["data"]["rayjob.yaml"])
    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["name"]: Path(m["mountPath"]) for m in head["containers"][0]["volumeMounts"]}
    data = load_config(source).model_dump(mode="json")
    data["run"]["ray_address"] = None  # as `factory submit --render configmap` writes it
    configmap = yaml.safe_load(render_configmap(params, data))
    mounts["config"].mkdir()
    (mounts["config"] / "run.yaml").write_text(configmap["data"]["run.yaml"])
    mounts["store"].mkdir()

    entrypoint = rayjob["spec"]["entrypoint"]
    assert entrypoint == (f"factory generate {mounts['config']}/run.yaml --no-progress --incremental "
                          f"--set output.store={mounts['store']}/factory-store")
    client = JobSubmissionClient(cluster.dashboard)
    for firing in (1, 2):
        job = client.submit_job(entrypoint=entrypoint, runtime_env={"env_vars": {"PYTHONUNBUFFERED": "1"}})
        assert _wait_job(client, job, timeout_s=240) == "SUCCEEDED", client.get_job_logs(job)[-4000:]
        logs = client.get_job_logs(job)
        versions = sorted(p.name for p in (mounts["store"] / "factory-store" / "mn").glob("v*"))
        assert versions == ["v1"], logs[-3000:]
        if firing == 2:
            assert "no new version" in logs
    assert _manifest(mounts["store"] / "factory-store")["counts"]["generations"] == 24


# --- verification on the cluster ---------------------------------------------------------------


def _verify_config(path: Path, store: Path, prompts: int, **run: Any) -> Path:
    """One replica (one of the three CPUs): the other two nodes' CPUs hold verification actors.
    Answers vary so that verdicts do: right, wrong, no answer, an engine error."""
    from factory.sources.builtin import arithmetic

    rows = arithmetic()[:prompts]
    answers: dict[str, Any] = {}
    for k, r in enumerate(rows):
        right, wrong = f"So \\boxed{{{r['answer']}}}", f"So \\boxed{{{int(r['answer']) + 1}}}"
        answers[r["problem"]] = [[right, wrong], [wrong, wrong], ["I give up", right], ["!error", right]][k % 4]
    data = {
        "source": {"builtin": "arithmetic", "limit": prompts},
        "teacher": {"engine": "scripted", "replicas": 1, "max_num_seqs": 1,
                    "engine_kwargs": {"answers": answers, "delay_s": 0.08}},
        "sampling": {"n": 2, "max_tokens": 50},
        "run": {"shard_size": 1, "inflight_factor": 1.0, "progress": False, **run},
        "output": {"store": str(store), "name": "mn"},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def _verify_actors(cluster: Cluster) -> dict[str, Any]:
    from ray.util.state import list_actors

    actors = list_actors(address=cluster.dashboard, filters=[("class_name", "=", "VerifyActor")], limit=1000)
    return {a.actor_id: a for a in actors}


def _verdicts(store: Path) -> list[tuple[Any, ...]]:
    import pyarrow.parquet as pq

    t = pq.read_table(store / "mn" / "v1" / "data" / "all").to_pylist()
    return sorted((r["prompt_id"], r["sample_index"], r["accepted"], r["reject_reason"],
                   json.dumps(r["verdicts"], sort_keys=True)) for r in t)


def test_verification_on_the_cluster_survives_a_killed_actor(cluster: Cluster, tmp_path: Path) -> None:
    """Verification runs in actors on two nodes; one is SIGKILLed mid-run: its calls go to another
    actor, it is replaced, and the verdicts equal a one-machine run's, every key once."""
    prompts = 40
    store = tmp_path / "cluster"
    config = _verify_config(tmp_path / "run.yaml", store, prompts, verify_on="cluster")
    before = set(_verify_actors(cluster))
    log = tmp_path / "generate.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "factory.cli", "generate", str(config)], cwd=ROOT,
                                env=_cluster_env(RAY_ADDRESS=cluster.gcs), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"the run ended before an actor could be killed:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            alive = [a for k, a in _verify_actors(cluster).items() if k not in before and a.state == "ALIVE"]
            if len(alive) >= 2 and (store / "mn" / ".runs").is_dir():
                break
            time.sleep(0.3)
        victim = alive[0]
        os.kill(victim.pid, signal.SIGKILL)  # the actor's worker process, as an OOM kill would
        assert proc.wait(timeout=180) == 0, log.read_text()[-6000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert "verification actor died" in text, text[-4000:]
    ours = [a for k, a in _verify_actors(cluster).items() if k not in before]
    assert len({a.node_id for a in ours}) >= 2  # verification ran on more than one node
    assert len(ours) >= 3  # the two first actors and the replacement
    stats = _manifest(store)["run_stats"]["verification"]
    assert stats["on"] == "cluster" and stats["retried_calls"] >= 1 and stats["nodes"] >= 2, stats
    cluster_rows = _verdicts(store)
    assert len({r[:2] for r in cluster_rows}) == len(cluster_rows) == prompts * 2  # nothing lost, nothing twice

    # The same completions verified on one machine, in the driver (the local backend).
    local = tmp_path / "local"
    config = _verify_config(tmp_path / "local.yaml", local, prompts, backend="local")
    env = _cluster_env()
    proc2 = _factory(["generate", str(config)], env)
    assert proc2.returncode == 0, proc2.stdout[-3000:] + proc2.stderr[-3000:]
    assert _manifest(local)["run_stats"]["verification"] == {"on": "driver"}
    local_rows = _verdicts(local)
    assert {r[3] for r in local_rows} >= {None, "math:wrong_answer", "engine:ScriptedError"}  # verdicts vary
    assert cluster_rows == local_rows
