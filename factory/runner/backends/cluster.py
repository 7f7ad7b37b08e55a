"""Connecting to Ray and sizing replicas to what the cluster has."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from factory.config import Config
from factory.engines import ENGINES
from factory.errors import UserError
from factory.runner.backends.placement import Placement, placement_for


@dataclass(slots=True)
class ReplicaPlan:
    count: int
    num_gpus: int
    num_cpus: int
    env: dict[str, str]
    placement: Placement | None = None  # a placement group per replica (world size > 1)


def ray_address(cfg: Config) -> str | None:
    """The Ray cluster the run is pointed at, if any."""
    return cfg.run.ray_address or os.environ.get("RAY_ADDRESS")


def running_ray() -> Any:
    """The ray module where this process is already part of a Ray job, else None (never imports it)."""
    import sys

    ray = sys.modules.get("ray")
    return ray if ray is not None and ray.is_initialized() else None


def replica_env() -> dict[str, str]:
    """What every replica's process gets, on either backend: vLLM's warnings only, one tokenizer thread."""
    return {"VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"), "TOKENIZERS_PARALLELISM": "false"}


# Results of up to this size travel inside the call's reply instead of through Ray's object store.
# Every result goes to the driver anyway (it writes the parts), and the store's path (a put on the
# replica's node, a pull by the driver's node, object-location lookups in between) ran 3.8x slower
# on the bench's 3-node cluster, with pulls stalling 60-110 s at a time (BENCHMARKS.md, issue 17).
# Ray's default is 100 KiB; one replica call's completions are often a few MB.
INLINE_RESULT_ENV = "RAY_max_direct_call_object_size"
INLINE_RESULT_BYTES = 32 * 2**20


def ray_job_env() -> dict[str, str]:
    """The Ray job's env: every actor of the run (replicas, verification actors) starts with it."""
    return {**replica_env(), INLINE_RESULT_ENV: os.environ.get(INLINE_RESULT_ENV, str(INLINE_RESULT_BYTES))}


def connect(cfg: Config) -> Any:
    import ray

    address = ray_address(cfg)
    if not ray.is_initialized():
        env = ray_job_env()
        os.environ[INLINE_RESULT_ENV] = env[INLINE_RESULT_ENV]  # the driver's own calls: what it sends inline
        if address:
            ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=True)
        else:
            # Ray renices its workers (15) by default; a CPU engine replica would then lose the
            # cores to anything else on the machine, the driver included.
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(include_dashboard=False, runtime_env={"env_vars": env}, log_to_driver=True,
                     num_cpus=os.cpu_count())
    return ray


def plan_replicas(cfg: Config) -> ReplicaPlan:
    """One replica per tensor/pipeline-parallel GPU group; on CPU, one per node."""
    import ray

    t = cfg.teacher
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if not ENGINES.get(t.engine).needs_accelerator(t.model_dump(mode="json")):
        return ReplicaPlan(t.replicas if t.replicas != "auto" else 1, 0, 1, {})
    node_gpus = [int(n["Resources"].get("GPU", 0)) for n in nodes]
    if sum(node_gpus):
        placement = placement_for(t.tensor_parallel_size, t.pipeline_parallel_size)
        count = gpu_replica_count(t.replicas, t.tensor_parallel_size, t.pipeline_parallel_size, node_gpus)
        if placement is None:
            return ReplicaPlan(count, 1, 1, {})
        # The actor itself takes bundle 0's CPU and no GPU: the engine's workers take the GPUs.
        return ReplicaPlan(count, 0, 1, {}, placement)
    node_cpus = [int(n["Resources"].get("CPU", 0)) for n in nodes if n["Resources"].get("CPU", 0) >= 1]
    if not node_cpus:
        raise RuntimeError("the Ray cluster has no CPUs or GPUs to place an engine replica on")
    cpus = t.cpus_per_replica or min(node_cpus)
    count = sum(c // cpus for c in node_cpus) if t.replicas == "auto" else t.replicas
    return ReplicaPlan(max(count, 1), 0, cpus, ENGINES.get(t.engine).cpu_replica_env(cpus))


def gpu_replica_count(replicas: int | str, tp: int, pp: int, node_gpus: list[int]) -> int:
    """How many replicas of tp x pp GPUs to run ("auto": as many as fit); raises if they do not fit.

    A tensor-parallel group (pp == 1) must sit on one node, so it is counted per node: two nodes
    of 3 GPUs hold two TP=2 replicas, not three. Pipeline stages may span nodes: all GPUs count.
    """
    world = tp * pp
    fits = sum(g // world for g in node_gpus) if pp == 1 else sum(node_gpus) // world
    count = fits if replicas == "auto" else int(replicas)
    if 1 <= count <= fits:
        return count
    shape = f"{world} GPU(s) (tensor_parallel_size={tp} x pipeline_parallel_size={pp})"
    has = f"the cluster's GPUs per node are {node_gpus}"
    if fits:
        raise UserError(f"{count} replicas x {shape} do not fit: {has}, which hold {fits}; "
                        f"set teacher.replicas to {fits} or less, or to auto")
    if pp == 1:
        raise UserError(f"a replica of {shape} needs them on one node (tensor parallel stays inside a node), "
                        f"but {has}: lower teacher.tensor_parallel_size to {max(node_gpus)} or less, or split "
                        "the model into pipeline stages (teacher.pipeline_parallel_size > 1 may span nodes)")
    raise UserError(f"a replica of {shape} does not fit: {has} ({sum(node_gpus)} in all); lower "
                    "teacher.tensor_parallel_size x pipeline_parallel_size, or add GPU nodes")
