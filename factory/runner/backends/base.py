"""Where engine replicas live, and the four verbs the scheduler uses to drive them.

Two backends implement it:

- `ray` (factory/runner/backends/ray.py): each replica is a Ray actor, on any node of a cluster,
  with its GPUs or placement group. What scheduled runs and multi-GPU machines use.
- `local` (factory/runner/backends/local.py): one replica in the driver's own process, its engine
  driven from an event-loop thread (vLLM still runs its engine core as a child process). What a
  single CPU machine uses: nothing of Ray's (an idle local Ray wakes ~750 times a second) shares
  the few cores with the engine. Measured as fast as the Ray backend on 2 cores (BENCHMARKS.md).

A call returns a ref; `wait` says which refs are done, `get` returns a done ref's value or raises
the call's error, and `is_replica_failure` says whether that error means "replace the replica".
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any



class Replica:
    def __init__(self, handle: Any, ready_ref: Any, placement_group: Any = None):
        self.handle = handle
        self.ready_ref = ready_ref
        self.placement_group = placement_group  # a multi-GPU replica's own group, removed with it
        self.info: dict[str, Any] | None = None
        self.inflight = 0  # requests
        self.calls = 0
        self.alone = False  # running an isolated call: nothing else may join it
        self.progress: tuple[int, int] = (0, 0)  # (requests finished, output tokens) as last polled
        self.started = False  # its engine is loaded; until then it gets no calls


class Backend(ABC):
    name: str
    count: int  # replicas to start

    @abstractmethod
    def spawn(self) -> Replica:
        """Start one replica; its engine loads in the background (`ready_ref` resolves to its info)."""

    @abstractmethod
    def call(self, rep: Replica, method: str, *args: Any) -> Any:
        """Call an EngineReplica method on the replica without waiting; returns a ref."""

    @abstractmethod
    def wait(self, refs: list[Any], timeout: float) -> list[Any]:
        """The refs that are done, waiting up to `timeout` seconds for at least one."""

    @abstractmethod
    def get(self, ref: Any) -> Any:
        """A done ref's value; raises what the call raised."""

    @abstractmethod
    def is_replica_failure(self, err: BaseException) -> bool:
        """Whether a call's error means the replica (or its engine) is gone and must be replaced."""

    @abstractmethod
    def stop(self, rep: Replica) -> None:
        """End the replica and free what it held; never raises."""

    def wait_placed(self, replicas: list[Replica]) -> None:
        """Block until every replica has its resources (multi-GPU placement groups)."""

    def placement_info(self) -> dict[str, Any] | None:
        """How a replica is laid out, for the manifest."""
        return None

    def close(self) -> None:
        """After every replica was stopped."""

