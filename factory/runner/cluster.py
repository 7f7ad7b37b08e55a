"""Connecting to Ray and sizing replicas to what the cluster has."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from factory.config import Config


@dataclass(slots=True)
class ReplicaPlan:
    count: int
    num_gpus: int
    num_cpus: int
    env: dict[str, str]


def connect(cfg: Config) -> Any:
    import ray

    address = cfg.run.ray_address or os.environ.get("RAY_ADDRESS")
    if not ray.is_initialized():
        env = {"VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"),
               "TOKENIZERS_PARALLELISM": "false"}
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
    gpus_per = t.tensor_parallel_size * t.pipeline_parallel_size
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total_gpus = int(sum(n["Resources"].get("GPU", 0) for n in nodes))
    if cfg.teacher.engine != "vllm":  # engines that need no accelerator of their own
        return ReplicaPlan(t.replicas if t.replicas != "auto" else 1, 0, 1, {})
    if total_gpus:
        count = total_gpus // gpus_per if t.replicas == "auto" else t.replicas
        if count < 1 or count * gpus_per > total_gpus:
            raise RuntimeError(
                f"{count} replica(s) x {gpus_per} GPU(s) do not fit the cluster's {total_gpus} GPU(s); "
                "lower teacher.replicas or tensor_parallel_size"
            )
        return ReplicaPlan(count, gpus_per, 1, {})
    node_cpus = [int(n["Resources"].get("CPU", 0)) for n in nodes if n["Resources"].get("CPU", 0) >= 1]
    if not node_cpus:
        raise RuntimeError("the Ray cluster has no CPUs or GPUs to place an engine replica on")
    cpus = t.cpus_per_replica or min(node_cpus)
    count = sum(c // cpus for c in node_cpus) if t.replicas == "auto" else t.replicas
    from factory.engines.vllm import cpu_engine_env

    return ReplicaPlan(max(count, 1), 0, cpus, cpu_engine_env(cpus))
