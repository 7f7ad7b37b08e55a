"""Verification on the Ray cluster's CPUs (the Ray backend), sized to the rate completions arrive.

Where: verification actors are spread (Ray's SPREAD strategy) over every node with CPUs the engine
replicas leave free: the spare cores of the GPU nodes first come for free (an 8-GPU node has
100+ cores and its replicas take 8), and CPU-only nodes add what code verification needs beyond
that (hundreds of cores at a 512-GPU fleet's rate, BENCHMARKS.md). No node is special: the
completions pass through the driver anyway (it writes every part), so an actor next to the
replica that wrote a trace would save one transfer of a few KB and nothing else.

Each actor holds the same VerifyStage as a one-machine run (factory/verifiers/stage.py): the same
verifiers, the same worker processes with hard per-call timeouts (pool.py), the same sandbox. One
call verifies one round of one shard and returns its rows.

How many: the run starts with a few actors and adds more while every actor is busy (two calls in
flight each, one running and one waiting), up to what the cluster's free CPUs hold
(`run.verify_actor_cpus` each). Backpressure: the scheduler keeps at most two calls per possible
actor in flight; past that its verification queue fills and dispatch waits, so nothing queues
without bound.

Faults: a call whose actor died (its process killed, its node gone) is sent again to another actor
and the dead one replaced: the shard's rows come from exactly one call that returned, so nothing is
lost and nothing is counted twice. A verifier that raises is a bug, fatal as on one machine.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from factory.config import Config
from factory.errors import UserError
from factory.store.parts import rows_to_table
from factory.types import Completion, Prompt
from factory.verifiers.stage import VerifyStage

log = logging.getLogger(__name__)

_CALLS_PER_ACTOR = 2  # one running, one waiting: an actor never idles between calls
_MAX_TRIES = 5  # per call: actors dying under one shard this often is not bad luck
_GROW_EVERY_S = 1.0


class VerifyActor:
    """Runs inside a Ray actor: one VerifyStage, built from plain config where it runs."""

    def __init__(self, cfg: dict[str, Any], workers: int):
        self._stage = VerifyStage(Config.model_validate(cfg), workers)

    def ready(self) -> dict[str, Any]:
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                "verifiers": self._stage.describe()}

    def rows(self, prompts: list[Prompt], completions: list[Completion]) -> Any:
        """The round's rows as a PART_SCHEMA table: built here, so the driver only concatenates
        (a table travels as Arrow buffers; dict rows cost the driver ~60 us a trace to convert)."""
        return rows_to_table(self._stage.rows({p.prompt_id: p for p in prompts}, completions))

    def close(self) -> None:
        self._stage.close()


class _Slot:
    __slots__ = ("handle", "ready_ref", "calls", "dead", "used")

    def __init__(self, handle: Any):
        self.handle = handle
        self.ready_ref = handle.ready.remote()
        self.calls = 0
        self.dead = False
        self.used = 0  # when it last got a call: ties go to the one idle longest, so all take turns


def verify_actor_slots(cfg: Config, backend: Any) -> int:
    """How many verification actors the cluster's CPUs hold beside the engine replicas."""
    ray, plan = backend.ray, backend.plan
    total = sum(n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive"))
    per_replica = sum(b.get("CPU", 0) for b in plan.placement.bundles) if plan.placement else plan.num_cpus
    free = total - plan.count * per_replica
    return max(0, int(free // cfg.run.verify_actor_cpus))


class ClusterVerification:
    """The driver's side: sends shard rounds to verification actors, thread-safe and blocking per call."""

    def __init__(self, cfg: Config, ray: Any, max_actors: int, initial: int):
        self.ray = ray
        self.max_actors = max(1, max_actors)
        self._cfg = cfg.model_dump(mode="json")
        self._workers = cfg.run.verify_actor_cpus
        self._cls = ray.remote(VerifyActor).options(
            num_cpus=cfg.run.verify_actor_cpus, max_restarts=0, max_concurrency=1,
            scheduling_strategy="SPREAD")
        self._lock = threading.Condition()
        self._slots: list[_Slot] = []
        self._grown_at = 0.0
        self._turn = 0
        self.started = 0
        self.retries = 0
        self.peak = 0
        self.nodes: set[str] = set()
        self._describe: list[dict[str, Any]] | None = None
        with self._lock:
            for _ in range(min(self.max_actors, max(1, initial))):
                self._spawn()

    @property
    def concurrency(self) -> int:
        """Calls the scheduler may have in flight at most."""
        return self.max_actors * _CALLS_PER_ACTOR

    def _spawn(self) -> None:
        self._slots.append(_Slot(self._cls.remote(self._cfg, self._workers)))
        self.started += 1
        self.peak = max(self.peak, len(self._slots))

    def wait_ready(self, timeout_s: float) -> None:
        """Block until one actor is up (its verifiers built): fail with what the cluster has, not hang."""
        refs = [s.ready_ref for s in self._slots]
        done, _ = self.ray.wait(refs, num_returns=1, timeout=timeout_s)
        if not done:
            raise UserError(f"no verification actor started within {timeout_s:.0f}s: the cluster has no free "
                            f"CPU for one ({self._workers} each, run.verify_actor_cpus); add CPU nodes, lower "
                            "teacher.replicas, or set run.verify_on=driver")
        info = self.ray.get(done[0])
        self._describe = info["verifiers"]
        self.nodes.add(info["node_id"])

    def describe(self) -> list[dict[str, Any]]:
        return self._describe or []

    def info(self) -> dict[str, Any]:
        for s in self._slots:  # nodes of actors that came up since
            if not s.dead and self.ray.wait([s.ready_ref], timeout=0)[0]:
                try:
                    self.nodes.add(self.ray.get(s.ready_ref)["node_id"])
                except Exception:
                    pass
        return {"on": "cluster", "actors_started": self.started, "actors_peak": self.peak,
                "actor_cpus": self._workers, "max_actors": self.max_actors, "retried_calls": self.retries,
                "nodes": len(self.nodes)}

    # ------------------------------------------------------------------ calls

    def _acquire(self) -> _Slot:
        with self._lock:
            while True:
                live = [s for s in self._slots if not s.dead]
                free = [s for s in live if s.calls < _CALLS_PER_ACTOR]
                busy = not [s for s in live if s.calls == 0]
                now = time.monotonic()
                # Every actor has work: completions arrive faster than they are verified. Grow (by
                # half again, so a big fleet is matched in a few seconds) while the CPUs allow.
                if busy and len(live) < self.max_actors and now - self._grown_at >= _GROW_EVERY_S:
                    self._grown_at = now
                    for _ in range(min(self.max_actors - len(live), max(1, len(live) // 2))):
                        self._spawn()
                    continue
                if free:
                    slot = min(free, key=lambda s: (s.calls, s.used))
                    slot.calls += 1
                    self._turn += 1
                    slot.used = self._turn
                    return slot
                self._lock.wait(timeout=0.5)

    def _release(self, slot: _Slot) -> None:
        with self._lock:
            slot.calls -= 1
            self._lock.notify()

    def _replace(self, slot: _Slot, err: BaseException) -> None:
        with self._lock:
            if slot.dead:
                return
            slot.dead = True
            self._slots.remove(slot)
            log.warning("verification actor died (%s: %s); replacing it", type(err).__name__,
                        str(err).splitlines()[0][:200] if str(err) else "")
            self._spawn()
            self._lock.notify_all()
        try:
            self.ray.kill(slot.handle)
        except Exception:
            pass

    def rows(self, prompts: list[Prompt], completions: list[Completion]) -> Any:
        """The rows of one round (a pa.Table); sent again to another actor if its actor dies under it."""
        for attempt in range(_MAX_TRIES):
            slot = self._acquire()
            try:
                return self.ray.get(slot.handle.rows.remote(prompts, completions))
            except self.ray.exceptions.RayActorError as e:
                self.retries += 1
                self._replace(slot, e)
                if attempt == _MAX_TRIES - 1:
                    raise
            finally:
                self._release(slot)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            slots, self._slots = self._slots, []
        for s in slots:
            try:
                self.ray.kill(s.handle)
            except Exception:
                pass

