"""Placement groups for engine replicas that need several GPUs (tensor x pipeline parallel > 1).

A replica of world size W gets one placement group of W one-GPU bundles. The replica actor sits
in bundle 0 (num_cpus=1, num_gpus=0) and captures its child tasks, so the vLLM engine it builds
picks the group up (`ray.util.get_current_placement_group()`), uses the Ray executor, and starts
one GPU worker per bundle (num_cpus=0, num_gpus=1). Bundle 0 carries the actor's CPU as well.

Tensor parallelism all-reduces on every layer and belongs inside one node (NVLink), so with
pipeline_parallel_size == 1 the group is STRICT_PACK; pipeline stages only pass activations, so
with pipeline_parallel_size > 1 the group is PACK and may span nodes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from factory.errors import UserError


@dataclass(frozen=True, slots=True)
class Placement:
    tensor_parallel_size: int
    pipeline_parallel_size: int

    @property
    def world_size(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def strategy(self) -> str:
        return "STRICT_PACK" if self.pipeline_parallel_size == 1 else "PACK"

    @property
    def bundles(self) -> list[dict[str, float]]:
        return [{"GPU": 1, "CPU": 1}] + [{"GPU": 1} for _ in range(self.world_size - 1)]

    def describe(self) -> dict[str, Any]:
        """For the manifest: how a replica of this run was laid out."""
        return {"strategy": self.strategy, "bundles": self.bundles, "world_size": self.world_size,
                "tensor_parallel_size": self.tensor_parallel_size,
                "pipeline_parallel_size": self.pipeline_parallel_size}


def placement_for(tensor_parallel_size: int, pipeline_parallel_size: int) -> Placement | None:
    """None for a one-GPU replica: a plain `num_gpus=1` actor needs no group."""
    p = Placement(tensor_parallel_size, pipeline_parallel_size)
    return p if p.world_size > 1 else None


def create(placement: Placement) -> Any:
    """Ask for the group; it is placed in the background (see wait_placed)."""
    from ray.util.placement_group import placement_group

    return placement_group(placement.bundles, strategy=placement.strategy)


def actor_options(pg: Any) -> dict[str, Any]:
    """Actor options that put a replica into bundle 0 of its group, with its engine's workers."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return {"num_cpus": 1, "num_gpus": 0, "scheduling_strategy": PlacementGroupSchedulingStrategy(
        pg, placement_group_bundle_index=0, placement_group_capture_child_tasks=True)}


def remove(pg: Any) -> None:
    """Free the group's GPUs (and end whatever still runs in it); safe to call twice."""
    from ray.util.placement_group import remove_placement_group

    try:
        remove_placement_group(pg)
    except Exception:  # already removed, or Ray is shutting down: nothing left to free
        pass


def wait_placed(groups: list[Any], placement: Placement, timeout_s: float) -> None:
    """Block until every group is placed; else fail with what the cluster has and what to change."""
    import ray

    refs = [pg.ready() for pg in groups]
    deadline = time.monotonic() + timeout_s
    ready: list[Any] = []
    while len(ready) < len(refs) and time.monotonic() < deadline:
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=min(5.0, max(0.1, deadline - time.monotonic())))
    if len(ready) < len(refs):
        raise UserError(not_placed_message(len(refs) - len(ready), len(refs), placement, _node_resources(), timeout_s))


def _node_resources() -> list[tuple[str, dict[str, float], dict[str, float]]]:
    """(node, total, available) for every alive node."""
    import ray

    try:  # no public per-node view of free resources; vLLM reads the same one
        from ray._private.state import available_resources_per_node

        available = available_resources_per_node()
    except Exception:
        available = {}
    return [(n["NodeManagerAddress"] + " " + n["NodeID"][:8], n["Resources"], available.get(n["NodeID"], {}))
            for n in ray.nodes() if n.get("Alive")]


def not_placed_message(pending: int, total: int, placement: Placement,
                       nodes: list[tuple[str, dict[str, float], dict[str, float]]], timeout_s: float) -> str:
    per_node = "; ".join(
        f"{name}: {int(avail.get('GPU', 0))}/{int(res.get('GPU', 0))} GPU, "
        f"{int(avail.get('CPU', 0))}/{int(res.get('CPU', 0))} CPU free" for name, res, avail in nodes)
    w = placement.world_size
    if placement.strategy == "STRICT_PACK":
        need = f"{w} free GPUs on one node (tensor parallel stays inside a node) plus 1 CPU there"
        hint = ("lower teacher.tensor_parallel_size to what one node has, or split the model into "
                "pipeline stages (teacher.pipeline_parallel_size > 1 may span nodes)")
    else:
        need = f"{w} free GPUs, packed on as few nodes as possible, and 1 CPU beside the first"
        hint = "lower teacher.tensor_parallel_size x pipeline_parallel_size"
    return (f"{pending} of {total} engine replica placement group(s) could not be placed within "
            f"{timeout_s:.0f}s: each needs {need} (bundles {placement.bundles}, strategy {placement.strategy}). "
            f"The cluster has: {per_node or 'no alive nodes'}. To fix: lower teacher.replicas, {hint}, "
            "free GPUs held by other jobs, or add GPU nodes (on an autoscaling cluster, raise "
            "run.placement_timeout_s)")
