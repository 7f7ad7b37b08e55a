"""Engine replica backends: where replicas live (Ray actors, or the driver's own process).

`open_backend(cfg)` picks one (`run.backend`); the scheduler talks only to `Backend` (base.py).
"""

from __future__ import annotations

from factory.config import Config
from factory.engines import ENGINES
from factory.errors import UserError
from factory.runner.backends.base import Backend, Replica
from factory.runner.backends.cluster import ray_address, running_ray
from factory.runner.backends.local import LocalBackend
from factory.runner.backends.ray import RayBackend

__all__ = ["Backend", "Replica", "open_backend", "resolve_backend"]


def open_backend(cfg: Config) -> Backend:
    name = resolve_backend(cfg)
    if name == "local":
        return LocalBackend(cfg)
    return RayBackend(cfg)


def resolve_backend(cfg: Config) -> str:
    """`auto`: local for one replica on a machine without a GPU and no Ray cluster; else Ray.

    A program that already called ray.init() gets its replicas in that Ray.
    """
    choice = cfg.run.backend
    t = cfg.teacher
    if choice == "auto":
        local = (not ray_address(cfg) and running_ray() is None and t.replicas in ("auto", 1)
                 and t.tensor_parallel_size * t.pipeline_parallel_size == 1 and not _gpu_engine_here(cfg))
        return "local" if local else "ray"
    if choice == "local":
        if t.replicas not in ("auto", 1):
            raise UserError(f"run.backend=local runs one replica, in this process, but teacher.replicas is "
                            f"{t.replicas}: set teacher.replicas to 1 (or auto), or run.backend to ray")
        if t.tensor_parallel_size * t.pipeline_parallel_size > 1:
            raise UserError("run.backend=local runs a one-GPU (or CPU) replica; a tensor or pipeline "
                            "parallel teacher needs run.backend=ray (or auto)")
        if ray_address(cfg):
            raise UserError("run.backend=local ignores the Ray cluster that run.ray_address or $RAY_ADDRESS "
                            "names: unset it, or set run.backend to ray (or auto)")
    return choice


def _gpu_engine_here(cfg: Config) -> bool:
    """Whether the engine would take GPUs on this machine: those runs keep Ray's GPU placement."""
    t = cfg.teacher
    engine = ENGINES.get(t.engine)
    return engine.needs_accelerator(t.model_dump(mode="json")) and engine.accelerator_present()
