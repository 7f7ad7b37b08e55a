"""One driver at scale: N problems x 4 samples through a local multi-node Ray cluster.

The simulated engine (factory/engines/simulated.py) on many replicas, real verification on the
cluster (verification actors; a cheap verifier, `truncation`: math-verify's own CPU cost per trace
is measured apart, below), real Parquet writes, real Ray. The driver is SIGKILLed once half the
prompts are committed and started again; the resumed run finishes and builds the version.

Printed (and appended to .bench/results.jsonl): driver peak RSS (both halves), driver CPU-seconds
per 1,000 traces and the traces a second that gives on one core, files written and their sizes,
restart to the first new request, the version build's time, math-verify's CPU per trace, and the
largest fleet one driver feeds.

Not in `make bench` (run_all.py): 1M problems x 4 samples take ~13 minutes on 2 cores (the
cluster side runs ~10,000 traces a second with results inline), 100,000 about 3 minutes.
    python -m benchmarks.bench_scale --prompts 20000          # ~1.5 min here
    python -m benchmarks.bench_scale --prompts 1000000        # ~13 min here (BENCHMARKS.md)
Run each phase under the heavy lock on a shared machine; `--phase first` / `--phase resume` split
the two halves into separate invocations (the run's store and config persist in --work).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_DIR, record

ROOT = Path(__file__).resolve().parents[1]

BIN = Path(sys.executable).parent
TICKS = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- a local multi-node Ray cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """A head and `workers` worker nodes on loopback, each announcing `cpus` logical CPUs."""

    def __init__(self, workers: int, cpus: int):
        self.root = Path(tempfile.mkdtemp(prefix="fbs", dir="/tmp"))  # short: Ray's socket paths
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.env.update(PATH=f"{BIN}{os.pathsep}{self.env.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0",
                        RAY_AUTH_MODE="disabled")
        self.procs: list[subprocess.Popen] = []
        self._start("head", ["--head", f"--port={self.port}", "--node-ip-address=127.0.0.1",
                             "--include-dashboard=false"], cpus)
        self._wait_port()
        for k in range(workers):
            self._start(f"w{k}", [f"--address={self.address}"], cpus)
        self._wait_nodes(workers + 1)

    def _start(self, name: str, args: list[str], cpus: int) -> None:
        log = open(self.root / f"{name}.log", "w")
        self.procs.append(subprocess.Popen(
            [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", f"--num-cpus={cpus}",
             f"--temp-dir={self.root / name}", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True))

    def _wait_port(self) -> None:
        for _ in range(180):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.5)
        raise SystemExit("the Ray head did not come up")

    def _wait_nodes(self, count: int) -> None:
        check = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
                 "print(sum(n['Alive'] for n in ray.nodes()))")
        for _ in range(120):
            out = subprocess.run([sys.executable, "-c", check, self.address], env=self.env, capture_output=True,
                                 text=True)
            if out.returncode == 0 and int(out.stdout.split()[-1]) >= count:
                return
            time.sleep(1.0)
        raise SystemExit(f"{count} Ray nodes did not come up")

    def stop(self) -> None:
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------- the driver, watched from outside


class Watch(threading.Thread):
    """Samples one process's RSS and CPU time (its own, not its children's) every 0.2 s."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_rss, self.cpu_s, self.samples = pid, 0, 0.0, []
        self.stopped = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stopped.is_set():
            try:
                rss = int(next(line for line in open(f"/proc/{self.pid}/status") if line.startswith("VmRSS")).split()[1])
                fields = open(f"/proc/{self.pid}/stat").read().rsplit(")", 1)[1].split()
                self.cpu_s = (int(fields[11]) + int(fields[12])) / TICKS
            except (OSError, StopIteration):
                return
            self.peak_rss = max(self.peak_rss, rss * 1024)
            self.samples.append((time.monotonic() - t0, rss * 1024, self.cpu_s))
            time.sleep(0.2)


def _committed_rows(run_parts: Path) -> int:
    try:
        return sum(json.loads(line)["rows"] for line in (run_parts / "index.jsonl").read_text().splitlines()
                   if line.endswith("}"))
    except (OSError, json.JSONDecodeError):
        return 0


def _write_source(path: Path, prompts: int) -> None:
    rnd = random.Random(0)
    with path.open("w") as f:
        for k in range(prompts):
            a, b = rnd.randint(10, 10**6), rnd.randint(10, 10**6)
            f.write(json.dumps({"id": f"q{k}", "problem": f"Problem {k}: what is {a} + {b}?",
                                "answer": str(a + b)}) + "\n")


def _config(work: Path, args: argparse.Namespace) -> Path:
    import yaml

    data = {
        "source": {"path": str(work / "problems.jsonl")},
        "prefilter": None,
        "teacher": {"engine": "simulated", "replicas": args.replicas, "max_num_seqs": 256, "max_model_len": 20000,
                    "engine_kwargs": {"time_scale": 0, "median_tokens": 3000, "sigma": 0.6,
                                      "chars_per_token": args.chars_per_token, "accuracy": 0.6}},
        "sampling": {"n": 4, "max_tokens": 16384},
        "verifiers": [{"name": "truncation"}],
        "run": {"shard_size": args.shard_size, "verify_on": "cluster", "progress": False},
        "output": {"store": str(work / "store"), "name": "scale"},
    }
    path = work / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _driver(config: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    out = log.open("w")
    return subprocess.Popen([sys.executable, "-m", "factory.cli", "generate", str(config)], cwd=ROOT, env=env,
                            stdout=out, stderr=subprocess.STDOUT)


def _run_dir(work: Path) -> Path | None:
    runs = sorted((work / "store" / "scale" / ".runs").glob("*/parts"))
    return runs[-1] if runs else None


def first_half(work: Path, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    config = work / "run.yaml"
    total = args.prompts * 4
    t0 = time.monotonic()
    proc = _driver(config, env, work / "first.log")
    watch = Watch(proc.pid)
    watch.start()
    while proc.poll() is None:
        parts = _run_dir(work)
        if parts is not None and _committed_rows(parts) >= total // 2:
            break
        time.sleep(0.5)
    if proc.poll() is not None:
        raise SystemExit(f"the first run ended before half way:\n{(work / 'first.log').read_text()[-3000:]}")
    cpu = watch.cpu_s
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    watch.stopped.set()
    wall = time.monotonic() - t0
    done = _committed_rows(_run_dir(work))
    return {"first_wall_s": round(wall, 1), "first_traces_committed": done, "first_driver_cpu_s": round(cpu, 1),
            "first_driver_peak_rss_mb": round(watch.peak_rss / 2**20), "first_rss_curve_mb": _curve(watch)}


def _curve(watch: Watch) -> list[int]:
    """RSS at tenths of the run: flat, or growing with the prompts done."""
    s = watch.samples
    return [round(s[int(k * (len(s) - 1) / 10)][1] / 2**20) for k in range(11)] if s else []


def resume(work: Path, args: argparse.Namespace, env: dict[str, str], before: int) -> dict[str, Any]:
    config = work / "run.yaml"
    t0 = time.time()
    proc = _driver(config, env, work / "resume.log")
    watch = Watch(proc.pid)
    watch.start()
    proc.wait()
    watch.stopped.set()
    wall = time.time() - t0
    text = (work / "resume.log").read_text()
    if proc.returncode != 0:
        raise SystemExit(f"the resumed run failed:\n{text[-4000:]}")
    version = next(line.split("version:")[1].split()[0] for line in text.splitlines() if "version:" in line) \
        if "version:" in text.replace("\n", " ") else None
    manifest = json.loads((work / "store" / "scale" / "v1" / "manifest.json").read_text())
    st = manifest["run_stats"]
    parts = _run_dir(work)
    index = [json.loads(line) for line in (parts / "index.jsonl").read_text().splitlines()]
    traces = manifest["configs"]["all"]["rows"]
    return {"version": version, "resume_wall_s": round(wall, 1), "resume_driver_cpu_s": round(watch.cpu_s, 1),
            "resume_driver_peak_rss_mb": round(watch.peak_rss / 2**20), "resume_rss_curve_mb": _curve(watch),
            "restart_to_first_request_s": round(st["first_request_at"] - t0, 2) if st.get("first_request_at") else None,
            "resume_generation_s": st["generation_s"], "resumed_traces": traces - before, "traces": traces,
            "verification": st.get("verification"), "parts": len(index),
            "parts_mb": round(sum(p["bytes"] for p in index) / 2**20, 1),
            "largest_part_mb": round(max(p["bytes"] for p in index) / 2**20, 1),
            "index_kb": round((parts / "index.jsonl").stat().st_size / 1024, 1),
            "version_files": len(manifest["files"]),
            "version_mb": round(sum(f.get("bytes", 0) for f in manifest["files"]) / 2**20, 1)}


def time_build(work: Path) -> dict[str, Any]:
    """The version build alone, in a fresh process, from the finished run's parts."""
    code = ("import json, resource, sys, time\n"
            "from factory.store.parts import RunDir\n"
            "from factory.store.version import build_version, load_manifest\n"
            "info = {k: v for k, v in load_manifest(sys.argv[3]).items() if k in "
            "('config','fingerprint','seed','teacher','verifiers','source','sampling','run_id')}\n"
            "info['stats'] = {}\n"
            "t = time.perf_counter(); build_version(sys.argv[1], RunDir(sys.argv[2]), info)\n"
            "print(json.dumps({'build_s': round(time.perf_counter() - t, 1), "
            "'build_peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))\n")
    out = subprocess.run([sys.executable, "-c", code, str(work / "rebuild"), str(_run_dir(work).parent),
                          str(work / "store" / "scale" / "v1")], cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if out.returncode != 0:
        return {"build_error": out.stderr[-500:]}
    shutil.rmtree(work / "rebuild", ignore_errors=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def math_verify_cost(traces: int = 300) -> dict[str, Any]:
    """math-verify's CPU per trace on simulated traces (one worker process: its wall is its CPU)."""
    from factory.config import Config
    from factory.engines import ENGINES
    from factory.types import Prompt
    from factory.verifiers.stage import VerifyStage

    cfg = Config.model_validate({"source": {"builtin": "arithmetic"}, "verifiers": [{"name": "math"}],
                                 "run": {"verify_workers": 1}})
    eng = ENGINES.get("simulated")({"engine_kwargs": {"time_scale": 0, "chars_per_token": 4}, "max_num_seqs": 1},
                                   {"max_tokens": 16384})
    rnd = random.Random(1)
    prompts = [Prompt(f"m{k}", k, "p", str(rnd.randint(10, 10**6)), [], "b") for k in range(traces)]
    comps = [eng.completion(p, 0) for p in prompts]
    stage = VerifyStage(cfg, 1)
    try:
        stage.rows({p.prompt_id: p for p in prompts[:10]}, comps[:10])  # the worker is up and warm
        t = time.perf_counter()
        stage.rows({p.prompt_id: p for p in prompts}, comps)
        per = (time.perf_counter() - t) / traces
    finally:
        stage.close()
    return {"math_verify_cpu_ms_per_trace": round(per * 1000, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=20_000)
    ap.add_argument("--replicas", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="Ray worker nodes beside the head")
    ap.add_argument("--node-cpus", type=int, default=12, help="logical CPUs each node announces")
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--chars-per-token", type=float, default=0.25)
    ap.add_argument("--phase", choices=["all", "first", "resume"], default="all")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or BENCH_DIR / f"scale-{args.prompts}"
    if args.phase in ("all", "first"):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        _write_source(work / "problems.jsonl", args.prompts)
        _config(work, args)
    t_all = time.monotonic()
    # A `timeout` (SIGTERM) still stops the cluster: its nodes lead sessions of their own.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cluster = LocalCluster(args.workers, args.node_cpus)
    env = dict(cluster.env, RAY_ADDRESS=cluster.address, PYTHONUNBUFFERED="1")
    result: dict[str, Any] = {"bench": "scale", "prompts": args.prompts, "samples": 4, "replicas": args.replicas,
                              "nodes": args.workers + 1, "shard_size": args.shard_size,
                              "chars_per_token": args.chars_per_token, "cpus": os.cpu_count()}
    state = work / "first.json"
    try:
        if args.phase in ("all", "first"):
            result.update(first_half(work, args, env))
            state.write_text(json.dumps(result))
            print(json.dumps(result), flush=True)
        if args.phase in ("all", "resume"):
            result.update(json.loads(state.read_text()))
            result.update(resume(work, args, env, result["first_traces_committed"]))
    finally:
        cluster.stop()
    if args.phase == "first":
        return 0
    result.update(time_build(work))
    result.update(math_verify_cost())
    cpu = result["first_driver_cpu_s"] + result["resume_driver_cpu_s"]
    result["driver_cpu_s_per_1000_traces"] = round(1000 * cpu / result["traces"], 3)
    result["driver_traces_per_cpu_s"] = round(result["traces"] / cpu)
    result["driver_peak_rss_mb"] = max(result["first_driver_peak_rss_mb"], result["resume_driver_peak_rss_mb"])
    # A GPU of a 7B teacher: 2,500 output tokens/s; a trace of this length distribution averages
    # median * exp(sigma^2 / 2) = 3,590 tokens: 0.70 traces/s a GPU.
    per_gpu = 2500 / (3000 * 2.718281828 ** (0.6 ** 2 / 2))
    result["gpus_one_driver_feeds_7b_3.6k_tokens"] = int(result["driver_traces_per_cpu_s"] / per_gpu)
    result["bench_wall_s"] = round(time.monotonic() - t_all, 1)
    record(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
