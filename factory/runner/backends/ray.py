"""Replicas as Ray actors: one per GPU (or tensor x pipeline parallel group), on any node."""

from __future__ import annotations

from typing import Any

from factory.config import Config
from factory.runner.backends import placement
from factory.runner.backends.base import Backend, Replica
from factory.runner.backends.cluster import connect, plan_replicas
from factory.runner.backends.replica import EngineReplica


class RayBackend(Backend):
    name = "ray"

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.ray = connect(cfg)
        self.plan = plan_replicas(cfg)
        self.count = self.plan.count
        self._actor_cls = self.ray.remote(EngineReplica)
        self._args = (cfg.teacher.engine, cfg.teacher.model_dump(mode="json"), cfg.sampling.model_dump(mode="json"))
        self._opts: dict[str, Any] = {"num_cpus": self.plan.num_cpus, "num_gpus": self.plan.num_gpus,
                                      "max_restarts": 0, "max_concurrency": 10_000}
        if self.plan.env:
            self._opts["runtime_env"] = {"env_vars": self.plan.env}

    def spawn(self) -> Replica:
        # A multi-GPU replica gets a group of its own; the actor waits in bundle 0 until it is placed.
        pg = placement.create(self.plan.placement) if self.plan.placement else None
        opts = {**self._opts, **(placement.actor_options(pg) if pg else {})}
        handle = self._actor_cls.options(**opts).remote(*self._args)
        return Replica(handle, handle.start.remote(), pg)

    def call(self, rep: Replica, method: str, *args: Any) -> Any:
        return getattr(rep.handle, method).remote(*args)

    def wait(self, refs: list[Any], timeout: float) -> list[Any]:
        return self.ray.wait(refs, num_returns=1, timeout=timeout)[0]

    def get(self, ref: Any) -> Any:
        return self.ray.get(ref)

    def is_replica_failure(self, err: BaseException) -> bool:
        # The actor died (RayActorError), or its call raised (RayTaskError): an engine only
        # raises when it is dead, since a failed request is a row.
        return isinstance(err, (self.ray.exceptions.RayActorError, self.ray.exceptions.RayTaskError))

    def stop(self, rep: Replica) -> None:
        """End the actor and free its GPUs, so that a replacement can be placed."""
        try:
            self.ray.kill(rep.handle)
        except Exception:
            pass
        if rep.placement_group is not None:
            placement.remove(rep.placement_group)

    def wait_placed(self, replicas: list[Replica]) -> None:
        if self.plan.placement:  # fail with what the cluster has, rather than wait on it forever
            placement.wait_placed([r.placement_group for r in replicas], self.plan.placement,
                                  self.cfg.run.placement_timeout_s)

    def placement_info(self) -> dict[str, Any] | None:
        return self.plan.placement.describe() if self.plan.placement else None
