"""One replica in the driver's own process: no Ray, for a run on one machine without a GPU.

The replica (the same EngineReplica a Ray actor holds) lives on an event loop in a thread of its
own, so its async engine keeps streaming while the driver thread dispatches and collects; calls
are `run_coroutine_threadsafe` futures. vLLM still runs its engine core (the model) as a child
process, so a dead engine core is an EngineDeadError here, and the replica is replaced by a new
engine in this process, as a Ray run replaces an actor.

The engine core and its worker are children of the driver, in its process group: killing the
run's process group (Ctrl-C, a job scheduler, `kill -- -PGID`) ends them with it. vLLM's engine
core never checks that its parent lives, so a driver killed alone (`kill -9 PID`, an OOM kill)
would leave it running: a process guard (group_guard.py) is told the engine's pids once it is up
and kills them when the driver exits without stopping them.

vLLM starts its engine core with `spawn` here, which re-imports the driver's main script: a
script that calls factory needs the usual `if __name__ == "__main__":` guard (the CLI has it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from typing import Any

from factory.config import Config
from factory.engines import ENGINES
from factory.errors import UserError
from factory.runner.backends.base import Backend, Replica
from factory.runner.backends.cluster import replica_env
from factory.runner.backends.group_guard import arm_process_guard, descendants
from factory.runner.backends.replica import EngineReplica

log = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 60.0


class LocalBackend(Backend):
    name = "local"
    count = 1

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._args = (cfg.teacher.engine, cfg.teacher.model_dump(mode="json"), cfg.sampling.model_dump(mode="json"))
        # What a Ray replica gets in its runtime env (cluster.py): the engine core process, started
        # from here, inherits it. Restored on close: the driver may be a longer-lived program.
        self._saved_env = _set_env(engine_env(cfg.teacher.engine, cfg.teacher.cpus_per_replica or os.cpu_count() or 1))
        self._calls: dict[Replica, set[concurrent.futures.Future]] = {}
        self._guard = arm_process_guard()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="factory-engine", daemon=True)
        self._thread.start()

    def spawn(self) -> Replica:
        handle = EngineReplica(*self._args)  # cheap: the engine loads in start()
        rep = Replica(handle, None)
        self._calls[rep] = set()
        rep.ready_ref = self._track(rep, asyncio.run_coroutine_threadsafe(self._start(handle), self._loop))
        return rep

    async def _start(self, handle: Any) -> dict[str, Any]:
        try:
            info = await handle.start()
        except RuntimeError as e:
            if "initialization failed" in str(e):
                raise UserError(f"the engine did not start ({e}). If a script of yours calls factory, put "
                                "the call under `if __name__ == \"__main__\":` (vLLM's engine process "
                                "re-imports the main script), or set run.backend=ray") from e
            raise
        if self._guard is not None:  # the engine's processes are up now: name them to the guard
            self._guard.watch([p for p in descendants() if p != self._guard.pid])
        return info

    def call(self, rep: Replica, method: str, *args: Any) -> concurrent.futures.Future:
        return self._track(rep, asyncio.run_coroutine_threadsafe(getattr(rep.handle, method)(*args), self._loop))

    def _track(self, rep: Replica, fut: concurrent.futures.Future) -> concurrent.futures.Future:
        calls = self._calls.setdefault(rep, set())
        calls.add(fut)
        fut.add_done_callback(calls.discard)
        return fut

    def wait(self, refs: list[Any], timeout: float) -> list[Any]:
        done, _ = concurrent.futures.wait(refs, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED)
        return list(done)

    def get(self, ref: Any) -> Any:
        return ref.result()

    def is_replica_failure(self, err: BaseException) -> bool:
        # As with a Ray actor: an engine raises only when it is dead (a failed request is a row),
        # so any error of a call means a new engine.
        return isinstance(err, Exception)

    def stop(self, rep: Replica) -> None:
        """Cancel what the replica still runs and shut its engine down (its engine core exits)."""
        for fut in list(self._calls.pop(rep, ())):
            fut.cancel()
        try:
            asyncio.run_coroutine_threadsafe(rep.handle.shutdown(), self._loop).result(_STOP_TIMEOUT_S)
        except Exception as e:  # a dead engine may fail to shut down cleanly; its processes are gone
            log.debug("replica shutdown: %s: %s", type(e).__name__, e)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), self._loop).result(_STOP_TIMEOUT_S)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_STOP_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()
        if self._guard is not None:  # every replica was stopped: nothing left for it to kill
            self._guard.disarm()
        _restore_env(self._saved_env)


def engine_env(engine: str, cpus: int) -> dict[str, str]:
    """The engine takes every core (or teacher.cpus_per_replica), as a CPU Ray replica does."""
    return {**replica_env(), **ENGINES.get(engine).cpu_replica_env(cpus)}


def _set_env(env: dict[str, str]) -> dict[str, str | None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    return saved


def _restore_env(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
