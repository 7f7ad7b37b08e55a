"""`factory generate`, top to bottom: prompts -> shards -> replicas -> verify -> parts -> version.

The driver is the single writer and holds the dataset's lock for the whole run. The committed
parts are the resume state: a rerun of the same config skips every committed shard.

Prompts are streamed: the source is read once to check it (identity, input policy), once to count
what the prefilters keep, and once more as the scheduler asks for shards; the driver holds the
shards in flight, never the prompt set (runner/feed.py says what still grows per prompt).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from factory import terminal
from factory.config import Config
from factory.engines.base import engine_class
from factory.errors import UserError
from factory.runner.backends import Replica, open_backend
from factory.runner.progress import ProgressView, RunStats
from factory.runner.runstate import mark_published, open_run, read_run_json, write_json_atomic
from factory.runner.scheduler import Scheduler
from factory.runner.feed import PromptFeed
from factory.runner.shards import Shard, cut_shards, shard_sizes
from factory.runner.verify_cluster import ClusterVerification, verify_actor_slots
from factory.sources import PromptSet, PromptStream, check_input_policy, input_identity
from factory.store.layout import dataset_path, version_path
from factory.store.lock import dataset_lock
from factory.store.parts import RunDir, rows_to_table
from factory.store.schema import PART_SCHEMA
from factory.store.version import build_version, latest_version, load_manifest, published_prompt_ids
from factory.verifiers.stage import VerifyStage

if TYPE_CHECKING:
    from factory.runner.backends import Backend

log = logging.getLogger(__name__)


@dataclass
class GenerateResult:
    version_dir: Path
    manifest: dict[str, Any]
    run_dir: Path
    resumed: bool
    new_version: bool = True  # False: an incremental run found nothing new; version_dir is the latest


def check_store_writable(dataset_dir: Path, create: bool = True) -> None:
    """A read-only or unreachable store is a one-line error, not a raw OSError from deep inside.
    `create=False` (a dry run) writes nothing: the nearest existing folder must be writable."""
    if not create:
        existing = next((p for p in (dataset_dir, *dataset_dir.parents) if p.exists()), Path("/"))
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise UserError(f"output.store: cannot write to {dataset_dir} ({existing} is not a writable folder); "
                            "pick a writable folder with --set output.store=PATH")
        return
    try:
        dataset_dir.mkdir(parents=True, exist_ok=True)
        probe = dataset_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"output.store: cannot write to {dataset_dir} ({e.strerror or e}); pick a writable "
                        f"folder with --set output.store=PATH") from None


def preflight(cfg: Config, create: bool = True) -> None:
    """Checks that need this machine, before any engine starts: the store, the teacher model."""
    check_store_writable(dataset_path(cfg.output.store, cfg.output.name), create)
    engine_class(cfg.teacher.engine).preflight(cfg.teacher.model_dump(mode="json"))


def generate(cfg: Config, resume_id: str | None = None, new_run: bool = False) -> GenerateResult:
    """Run `cfg` to a new local version. `resume_id` resumes that run; `new_run` never resumes.

    Everything a user can get wrong (config, input, store) is checked before any engine starts.
    """
    dataset_dir = dataset_path(cfg.output.store, cfg.output.name)
    preflight(cfg)
    with dataset_lock(dataset_dir), PromptStream(cfg) as stream:
        summary = stream.scan()  # the whole input once: identity, rejects, counts; no prompt kept
        check_input_policy(summary, cfg.source)
        feed = PromptFeed(cfg, stream)
        run_path, resumed = open_run(dataset_dir, cfg, resume_id, input_identity(summary.info), new_run)
        terminal.log_to(run_path / terminal.LOG_NAME)  # no-op unless the CLI made the terminal quiet
        meta = read_run_json(run_path)
        parent: Path | None = None
        if cfg.output.incremental:
            # The parent is fixed when a run starts, so a resumed run sees the same prompt set.
            if "parent" not in meta:
                latest = latest_version(dataset_dir)
                meta["parent"] = latest.name if latest else None
                write_json_atomic(run_path / "run.json", meta)
            parent = version_path(dataset_dir, meta["parent"]) if meta["parent"] else None
            if parent is not None:
                feed.published = published_prompt_ids(parent)
        total = feed.count(run_path / "prefiltered.jsonl")  # a second pass: counts, nothing held
        prefiltered = feed.prefiltered
        if not total and parent is not None:
            if not RunDir(run_path).committed_shards():
                RunDir(run_path).remove()  # nothing was generated: leave no unfinished run behind
            return GenerateResult(parent, load_manifest(parent), run_path, resumed, new_version=False)
        if not total:
            raise UserError(
                f"no prompts to generate from {summary.info['name']}: input rejected "
                f"{dict(summary.input_rejected)}, prefiltered {prefiltered}"
            )
        run = RunDir(run_path)
        run.clean_temp()
        size = cfg.run.shard_size
        sizes = list(shard_sizes(total, size))
        done = run.committed_shards()
        committed = [k for k in range(len(sizes)) if k in done]
        if resumed:
            log.warning("resuming run %s: %d of %d shards already committed", run_path.name, len(committed),
                        len(sizes))
        resumed = sum(sizes[k] for k in committed)
        stats = RunStats(prompts_total=total, prompts_done=resumed, prompts_resumed=resumed)
        if len(committed) < len(sizes):
            # Shards are cut from a third read of the source as the scheduler asks for them.
            teacher_info, verifiers_info = _generate(cfg, cut_shards(feed, size, skip=done), run, stats)
        else:
            teacher_info, verifiers_info = meta.get("teacher", {}), meta.get("verifiers", [])
        info = _manifest_info(cfg, summary, teacher_info, verifiers_info, stats, run_path, prefiltered)
        # The run itself, not run.read_table(): the build reads one part at a time.
        version_dir = build_version(dataset_dir, run, info, parent=parent)
        mark_published(run_path, version_dir.name)
        return GenerateResult(version_dir, load_manifest(version_dir), run_path, resumed)


def _manifest_info(cfg: Config, prompt_set: PromptSet, teacher: dict[str, Any], verifiers: list[dict[str, Any]],
                   stats: RunStats, run_path: Path, prefiltered: dict[str, int]) -> dict[str, Any]:
    st = stats.as_dict()
    st.update(prefiltered=prefiltered, input_rejected=dict(prompt_set.input_rejected))
    return {
        "config": cfg.model_dump(mode="json"),
        "fingerprint": cfg.fingerprint(),
        "seed": cfg.sampling.seed,
        "license": cfg.output.license,
        "teacher": teacher,
        "verifiers": verifiers,
        "source": prompt_set.info,
        "sampling": cfg.sampling.model_dump(mode="json"),
        "stats": st,
        "run_id": run_path.name,
    }


def _generate(cfg: Config, todo: Iterable[Shard], run: Any, stats: RunStats) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    backend = open_backend(cfg)
    stage: Any = None
    remote: ClusterVerification | None = None
    slots = _verify_actor_slots(cfg, backend)  # 0: verify in the driver
    if not slots:
        workers = cfg.run.verify_workers if cfg.run.verify_workers != "auto" else max(1, os.cpu_count() or 1)
        stage = VerifyStage(cfg, workers)  # worker processes start while the engines load
    replicas: list[Replica] = []
    try:
        replicas.extend(backend.spawn() for _ in range(backend.count))
        backend.wait_placed(replicas)
        with ProgressView(stats, enabled=cfg.run.progress) as view:
            teacher_info = _wait_ready(backend, replicas, stats)
            teacher_info["placement"] = backend.placement_info()
            if slots:  # after the replicas hold their CPUs: actors placed first could split a node's
                remote = ClusterVerification(cfg, backend.ray, max_actors=slots,  # type: ignore[attr-defined]
                                             initial=min(slots, max(2, backend.count)))
                remote.wait_ready(cfg.run.placement_timeout_s)
                verify_rows = lambda s: remote.rows(s.prompts, s.completions)  # noqa: E731
            else:
                verify_rows = lambda s: rows_to_table(stage.rows(s.by_id, s.completions))  # noqa: E731
            verifiers_info = (remote or stage).describe()
            meta = read_run_json(run.path)
            meta.update(teacher=teacher_info, verifiers=verifiers_info)
            write_json_atomic(run.path / "run.json", meta)

            writer = run.writer(int(cfg.run.part_mb * (1 << 20)), cfg.run.part_seconds)

            def commit(shard: Shard) -> None:
                rows = pa.concat_tables(shard.rows) if shard.rows else PART_SCHEMA.empty_table()
                writer.add(shard.shard_id, rows)  # committed with its part (write, then mark)

            try:
                Scheduler(cfg, backend, replicas, verify_rows, commit, stats, view, flush_due=writer.tick,
                          verify_concurrency=remote.concurrency if remote else 1).run(todo)
            except BaseException:
                try:  # what was gathered is verified work: commit it, so that resume keeps it
                    writer.flush()
                except Exception as e:
                    log.warning("could not commit the last part (%s: %s); resume redoes its shards",
                                type(e).__name__, e)
                raise
            writer.flush()
            stats.gen_finished = time.perf_counter()
            view.update()
            stats.verification = remote.info() if remote else {"on": "driver"}
    finally:
        if remote or stage:
            (remote or stage).close()
        for rep in replicas:
            backend.stop(rep)  # the replica, and its placement group: nothing outlives the run
        backend.close()
    return teacher_info, verifiers_info


def _verify_actor_slots(cfg: Config, backend: Backend) -> int:
    """How many verification actors the cluster's free CPUs hold (verify_cluster.py); 0: the driver verifies."""
    where = cfg.run.verify_on
    if backend.name != "ray" or where == "driver":
        if where == "cluster":
            raise UserError("run.verify_on=cluster needs the Ray backend (run.backend=ray, or a Ray address)")
        return 0
    slots = verify_actor_slots(cfg, backend)
    if not slots and where == "cluster":
        raise UserError("run.verify_on=cluster, but the engine replicas take every CPU of the cluster: add CPU "
                        "nodes, lower teacher.replicas or teacher.cpus_per_replica, or set run.verify_on=driver")
    if not slots:
        log.info("no CPU left beside the engine replicas on the cluster: verifying in the driver")
    return slots


def _wait_ready(backend: Backend, replicas: list[Any], stats: RunStats) -> dict[str, Any]:
    infos = [backend.get(r.ready_ref) for r in replicas]
    for r, info in zip(replicas, infos):
        r.info, r.started = info, True
    stats.engine_ready_s = time.perf_counter() - stats.started
    info = dict(infos[0])
    # One "ready" figure everywhere (summary, manifest, card): seconds from the run's start until
    # every replica was ready. The engine's own load time of the first replica is kept beside it.
    if "ready_s" in info:
        info["engine_load_s"] = info.pop("ready_s")
    info["ready_s"] = round(stats.engine_ready_s, 3)
    info.pop("pid", None)
    info.pop("placement_group", None)
    info["replicas"] = len(replicas)
    info["backend"] = backend.name
    info["nodes"] = sorted({i.get("node") for i in infos})
    info["node_ids"] = sorted({i.get("node_id") for i in infos if i.get("node_id")})
    info["placement_groups"] = sorted(i["placement_group"] for i in infos if i.get("placement_group"))
    return info
