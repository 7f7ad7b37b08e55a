"""An engine replica: builds its engine from plain config where it runs, and serves calls.

A Ray actor (ray backend) or an object on the driver's engine thread (local backend).

Nothing holding a CUDA context or an engine is ever pickled: the actor receives dicts and returns
lists of Completions. Async methods let many shards be in flight at once, which keeps the engine's
own scheduler full while the driver verifies and writes.
"""

from __future__ import annotations

import os
from typing import Any

from factory.engines import ENGINES
from factory.runner.backends.cluster import running_ray
from factory.runner.backends.group_guard import arm_group_guard
from factory.types import Completion, Prompt


class EngineReplica:
    def __init__(self, engine: str, teacher: dict[str, Any], sampling: dict[str, Any]):
        self._engine = ENGINES.get(engine)(teacher, sampling)
        self._guard = arm_group_guard() if _inside_ray_actor() else None

    async def start(self) -> dict[str, Any]:
        await self._engine.start()
        info = self._engine.info()
        info["node"] = os.uname().nodename
        info["pid"] = os.getpid()
        ray = running_ray()
        if ray is not None:  # else a replica in the driver's process (local backend, tests)
            info["node_id"] = ray.get_runtime_context().get_node_id()
            pg = ray.util.get_current_placement_group()  # what a multi-GPU engine builds its workers in
            info["placement_group"] = pg.id.hex() if pg is not None else None
        return info

    async def run(self, requests: list[tuple[Prompt, int]]) -> list[Completion]:
        return [c async for c in self._engine.generate(requests)]

    async def progress(self) -> tuple[int, int]:
        """(requests finished, output tokens) so far: polled by the driver for the live bar."""
        return self._engine.requests_done, self._engine.tokens_out

    async def shutdown(self) -> None:
        await self._engine.shutdown()
        if self._guard is not None:
            self._guard.disarm()
            self._guard = None


def _inside_ray_actor() -> bool:
    """The guard belongs to a replica actor's own process, never to a test or driver using the class."""
    ray = running_ray()
    try:
        return ray is not None and ray.get_runtime_context().get_actor_id() is not None
    except Exception:
        return False
