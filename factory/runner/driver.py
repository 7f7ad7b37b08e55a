"""`factory generate`, top to bottom: prompts -> shards -> replicas -> verify -> parts -> version.

The driver is the single writer. Replicas (Ray actors) pull shards: each is kept with enough
requests in flight that its engine never drains; finished shards go through a bounded queue to a
verification thread (backpressure, not an unbounded buffer), which commits one Parquet part per
shard. The parts are the resume state: a rerun skips every committed shard.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.config import Config
from factory.runner.progress import ProgressView, RunStats
from factory.runner.runstate import mark_published, open_run
from factory.runner.shards import Shard, make_shards
from factory.sources import load_prompts
from factory.types import Completion, Prompt

log = logging.getLogger(__name__)


@dataclass
class GenerateResult:
    version_dir: Path
    manifest: dict[str, Any]
    run_dir: Path
    resumed: bool


class _Replica:
    def __init__(self, handle: Any, ready_ref: Any):
        self.handle = handle
        self.ready_ref = ready_ref
        self.info: dict[str, Any] | None = None
        self.inflight = 0  # requests


def generate(cfg: Config, resume_id: str | None = None, console_progress: bool | None = None) -> GenerateResult:
    from factory.store.lock import dataset_lock
    from factory.store.parts import RunDir

    dataset_dir = Path(cfg.output.store) / cfg.output.name
    with dataset_lock(dataset_dir):
        prompt_set = load_prompts(cfg)
        prompts = prompt_set.prompts
        prefiltered: dict[str, int] = {}
        if cfg.prefilter is not None:
            from factory.prefilter import apply_prefilters

            prompts, prefiltered, _removed = apply_prefilters(prompts, cfg.prefilter)
            for k, p in enumerate(prompts):
                p.index = k
        if not prompts:
            raise RuntimeError(
                f"no prompts to generate from {prompt_set.info['name']}: "
                f"input rejected {dict(prompt_set.input_rejected)}, prefiltered {prefiltered}"
            )
        run_path, resumed = open_run(dataset_dir, cfg, resume_id)
        run = RunDir(run_path)
        run.clean_temp()
        shards = make_shards(prompts, cfg.run.shard_size)
        done = run.committed_shards()
        todo = [s for s in shards if s.shard_id not in done]
        if resumed:
            log.warning("resuming run %s: %d of %d shards already committed", run_path.name, len(done), len(shards))
        stats = RunStats(prompts_total=len(prompts))
        stats.prompts_done = sum(len(s.prompts) for s in shards if s.shard_id in done)
        teacher_info: dict[str, Any] = {}
        verifiers_info: list[dict[str, Any]] = []
        if todo:
            teacher_info, verifiers_info = _generate_shards(cfg, todo, run, stats, console_progress)
        else:
            teacher_info = dict(_read_teacher_info(run_path))
            verifiers_info = _verifiers_info(cfg)
        stats.gen_finished = stats.gen_finished or time.perf_counter()
        manifest_info = _manifest_info(cfg, prompt_set.info, teacher_info, verifiers_info, stats, run_path, prefiltered)
        manifest_info["stats"]["input_rejected"] = dict(prompt_set.input_rejected)
        from factory.store.version import build_version, load_manifest

        version_dir = build_version(dataset_dir, run.read_table(), manifest_info)
        mark_published(run_path, version_dir.name)
        return GenerateResult(version_dir, load_manifest(version_dir), run_path, resumed)


def _verifiers_info(cfg: Config) -> list[dict[str, Any]]:
    from factory.verifiers import VERIFIERS

    out = []
    for spec in cfg.verifiers:
        cls = VERIFIERS.get(spec.name)
        out.append({"name": spec.name, "version": getattr(cls, "version", "1"),
                    "params": cls.Params.model_validate(spec.params()).model_dump(mode="json")})
    return out


def _read_teacher_info(run_path: Path) -> dict[str, Any]:
    from factory.runner.runstate import read_run_json

    return read_run_json(run_path).get("teacher", {"model": None})


def _manifest_info(cfg: Config, source: dict[str, Any], teacher: dict[str, Any], verifiers: list[dict[str, Any]],
                   stats: RunStats, run_path: Path, prefiltered: dict[str, int]) -> dict[str, Any]:
    st = stats.as_dict()
    st["prefiltered"] = prefiltered
    return {
        "config": cfg.model_dump(mode="json"),
        "fingerprint": cfg.fingerprint(),
        "seed": cfg.sampling.seed,
        "teacher": teacher,
        "verifiers": verifiers,
        "source": source,
        "sampling": cfg.sampling.model_dump(mode="json"),
        "stats": st,
        "run_id": run_path.name,
    }


def _generate_shards(cfg: Config, todo: list[Shard], run: Any, stats: RunStats,
                     console_progress: bool | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    import os

    from factory.runner.cluster import connect, plan_replicas
    from factory.runner.replica import EngineReplica
    from factory.runner.runstate import _write_json_atomic, read_run_json
    from factory.runner.verify import VerifyStage

    ray = connect(cfg)
    plan = plan_replicas(cfg)
    actor_cls = ray.remote(EngineReplica)
    teacher = cfg.teacher.model_dump(mode="json")
    sampling = cfg.sampling.model_dump(mode="json")
    opts = {"num_cpus": plan.num_cpus, "num_gpus": plan.num_gpus, "max_restarts": 0,
            "runtime_env": {"env_vars": plan.env} if plan.env else None, "max_concurrency": 10_000}

    def spawn() -> _Replica:
        h = actor_cls.options(**{k: v for k, v in opts.items() if v is not None}).remote(cfg.teacher.engine, teacher, sampling)
        return _Replica(h, h.start.remote())

    workers = cfg.run.verify_workers if cfg.run.verify_workers != "auto" else max(1, (os.cpu_count() or 2) - 0)
    stage = VerifyStage(cfg, workers)
    replicas = [spawn() for _ in range(plan.count)]
    target = max(1, int(cfg.teacher.max_num_seqs * cfg.run.inflight_factor))  # requests per replica
    n = cfg.sampling.n
    pending_shards = list(reversed(todo))  # pop() from the end = in order
    inflight: dict[Any, tuple[_Replica, Shard]] = {}
    results: queue.Queue = queue.Queue(maxsize=max(4, 2 * len(replicas)))  # backpressure
    failure: list[BaseException] = []
    t_start = time.perf_counter()

    def writer() -> None:
        try:
            while True:
                item = results.get()
                if item is None:
                    return
                shard, completions = item
                by_id = {p.prompt_id: p for p in shard.prompts}
                rows = stage.rows(by_id, completions)
                run.commit_part(shard.shard_id, rows)  # write, then it counts as done
                stats.add_rows(rows, len(shard.prompts))
        except BaseException as e:  # surfaced by the main loop
            failure.append(e)

    thread = threading.Thread(target=writer, name="factory-verify-write", daemon=True)
    thread.start()
    try:
        with ProgressView(stats, enabled=cfg.run.progress if console_progress is None else console_progress) as view:
            teacher_info = _wait_ready(ray, replicas, stats, t_start)
            meta = read_run_json(run.path)
            meta["teacher"] = teacher_info
            _write_json_atomic(run.path / "run.json", meta)
            stats.gen_started = time.perf_counter()
            while pending_shards or inflight:
                if failure:
                    raise failure[0]
                for rep in replicas:
                    while pending_shards and (rep.inflight < target or not any(r is rep for r, _ in inflight.values())):
                        shard = pending_shards.pop()
                        reqs = shard.requests(n)
                        inflight[rep.handle.run.remote(reqs)] = (rep, shard)
                        rep.inflight += len(reqs)
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
                for ref in ready:
                    rep, shard = inflight.pop(ref)
                    rep.inflight -= len(shard.prompts) * n
                    try:
                        completions: list[Completion] = ray.get(ref)
                    except ray.exceptions.RayActorError as e:
                        replicas = _replace(ray, replicas, rep, spawn, inflight, pending_shards, shard, e, cfg)
                        continue
                    except ray.exceptions.RayTaskError as e:
                        # An engine that raised (dead engine): replace the replica, retry the shard.
                        replicas = _replace(ray, replicas, rep, spawn, inflight, pending_shards, shard, e, cfg)
                        continue
                    _put(results, (shard, completions), failure)
                view.update()
            stats.gen_finished = time.perf_counter()
            _put(results, None, failure)
            thread.join()
            if failure:
                raise failure[0]
            view.update()
    finally:
        if thread.is_alive():
            try:
                results.put_nowait(None)
            except queue.Full:
                pass
        stage.close()
        for rep in replicas:
            try:
                ray.kill(rep.handle)
            except Exception:
                pass
    return teacher_info, stage.describe()


def _put(q: queue.Queue, item: Any, failure: list[BaseException]) -> None:
    while True:
        if failure:
            raise failure[0]
        try:
            q.put(item, timeout=1.0)
            return
        except queue.Full:
            continue


def _wait_ready(ray: Any, replicas: list[_Replica], stats: RunStats, t0: float) -> dict[str, Any]:
    infos = ray.get([r.ready_ref for r in replicas])
    for r, info in zip(replicas, infos):
        r.info = info
    stats.engine_ready_s = time.perf_counter() - t0
    info = dict(infos[0])
    info["replicas"] = len(replicas)
    info["nodes"] = sorted({i.get("node") for i in infos})
    return info


def _replace(ray: Any, replicas: list[_Replica], dead: _Replica, spawn: Any, inflight: dict, pending: list[Shard],
             shard: Shard, err: BaseException, cfg: Config) -> list[_Replica]:
    """A replica died: start a new one, put its shards back (they were not committed)."""
    log.warning("replica failed (%s); replacing it and retrying shard %d", type(err).__name__, shard.shard_id)
    lost = [shard] + [s for ref, (r, s) in list(inflight.items()) if r is dead]
    for ref in [ref for ref, (r, _) in inflight.items() if r is dead]:
        inflight.pop(ref)
    try:
        ray.kill(dead.handle)
    except Exception:
        pass
    for s in lost:
        s.tries += 1
        if s.tries > cfg.run.max_shard_retries:
            raise RuntimeError(
                f"shard {s.shard_id} failed on {s.tries} replicas in a row (last error: {type(err).__name__}: "
                f"{str(err)[:300]}); the run is resumable once the cause is fixed"
            ) from err
        pending.append(s)
    fresh = spawn()
    fresh.info = ray.get(fresh.ready_ref)
    return [r for r in replicas if r is not dead] + [fresh]
