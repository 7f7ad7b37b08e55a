"""A process pool whose per-call timeout is enforced from outside the call.

Why not concurrent.futures / multiprocessing.Pool: neither can stop one stuck call. math-verify's
own timeout uses `signal.alarm`, which only works in a process's main thread (so not in the
driver's verification thread, nor in Ray workers), and sympy can spin for minutes on adversarial
input or block inside C code where no signal handler runs. Here the parent times every call; a
call past its deadline gets its worker SIGKILLed and replaced, and the item gets a `timed_out`
result. A worker that dies (segfault, OOM kill) is replaced the same way. The pool goes on.

Workers are started with the "spawn" method by default: the driver runs threads and Ray, and
forking a threaded process can deadlock the child. Each worker imports its function (given as
"module:function", so nothing is pickled but the items) once when it starts. As with any spawn
pool, a script that uses it needs the `if __name__ == "__main__":` guard (the children import
the main module). Workers are daemon processes: a function may use subprocess, not
multiprocessing children of its own.

Why not `pebble` (ProcessPool(max_tasks=...).schedule(fn, timeout=...)), which also kills and
replaces a worker past its timeout, recycles workers, and runs each call in the worker's main
thread (so math-verify's signal.alarm works under either)? Weighed in issue 14 and kept, because:
  - pebble keeps three manager threads per pool in the parent; when one fails the pool turns
    into an error state that every later call raises, and its tracker has reports of pools that
    deadlock or cannot recover after a broken worker (noxdafox/pebble #42, #69, #70). This pool
    has no threads of its own: `map` drives the workers from the calling thread, and its only
    recovery is the one that is always safe, kill and replace a process;
  - it tells "the function cannot even import" (three failed starts in a row: PoolError, fatal,
    an install or config bug) from a row that fails, times out or kills its worker (a result);
    with pebble both arrive as per-future errors and the distinction would be rebuilt on top;
  - the function is imported once per worker by name ("module:function") and only items travel;
    callers get results in item order plus counters (timeouts, deaths, restarts) for the logs.
    An adapter from pebble's futures to that `map` would be most of this file's size again, plus
    a dependency. Revisit if the pool grows features pebble already has (e.g. async scheduling).
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

log = logging.getLogger(__name__)

_MAX_START_FAILURES = 3  # in a row; then the function itself is broken, and that is fatal


class PoolError(RuntimeError):
    """The pool cannot work at all (its function does not import, workers cannot start)."""


@dataclass(slots=True)
class PoolResult:
    index: int  # position of the item in the list given to map()
    value: Any = None
    error: str | None = None  # "ExcType: message", or why the worker died
    timed_out: bool = False
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out


def resolve(path: str) -> Callable[..., Any]:
    """"package.module:function" -> the function."""
    module, sep, name = path.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"expected 'module:function', got {path!r}")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{path!r} is not callable")
    return obj


def _worker_main(conn: Connection, function: str, initializer: str | None) -> None:
    """Worker loop: import once, say ready, then answer (task_id, item) messages one at a time."""
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        fn = resolve(function)
        if initializer:
            resolve(initializer)()
    except BaseException:
        conn.send(("init_error", traceback.format_exc(limit=5)))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away
        if msg is None:
            # Skip interpreter teardown: freeing a sympy-sized heap takes seconds, and the
            # worker holds nothing that needs finalizing beyond its output streams.
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            os._exit(0)
        task_id, item = msg
        try:
            reply = (task_id, True, fn(item))
        except BaseException as e:  # noqa: BLE001 - a row error is data, not a dead worker
            reply = (task_id, False, f"{type(e).__name__}: {e}")
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
        except Exception as e:  # the value did not pickle
            conn.send((task_id, False, f"result not picklable: {type(e).__name__}: {e}"))


class _Worker:
    __slots__ = ("proc", "conn", "ready", "started", "task", "deadline", "sent_at", "done")

    def __init__(self, ctx: Any, function: str, initializer: str | None):
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=_worker_main, args=(child_conn, function, initializer), daemon=True
        )
        self.proc.start()
        child_conn.close()  # so that recv() sees EOF when the child dies
        self.conn: Connection = parent_conn
        self.ready = False
        self.started = time.monotonic()
        self.task: int | None = None  # index of the item it works on
        self.deadline = 0.0
        self.sent_at = 0.0
        self.done = 0  # tasks finished, for recycling

    def kill(self) -> None:
        try:
            self.proc.kill()
        except Exception:  # already gone
            pass
        self.proc.join(timeout=5)
        self.conn.close()


def _shutdown(workers: list[_Worker]) -> None:
    for w in workers:
        try:
            w.conn.send(None)
        except Exception:
            pass
    end = time.monotonic() + 2.0
    for w in workers:
        w.proc.join(timeout=max(0.0, end - time.monotonic()))
        if w.proc.is_alive():
            w.proc.kill()
            w.proc.join(timeout=5)
        w.conn.close()
    workers.clear()


class HardTimeoutPool:
    """`workers` processes each running `function` on one item at a time, `timeout_s` per call.

    Workers start lazily (on the first map) and only as many as there are items. `map` may be
    called from any thread; concurrent calls are served one after the other.
    """

    def __init__(
        self,
        function: str,
        workers: int | None = None,
        timeout_s: float = 5.0,
        *,
        initializer: str | None = None,
        start_method: str = "spawn",
        start_timeout_s: float = 120.0,
        max_tasks_per_worker: int | None = None,
    ):
        if start_method == "fork":
            raise ValueError("fork is unsafe in a threaded driver; use 'spawn' or 'forkserver'")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self.function = function
        self.initializer = initializer
        self.size = max(1, workers or os.cpu_count() or 1)
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.max_tasks_per_worker = max_tasks_per_worker
        self._ctx = mp.get_context(start_method)
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self.stats = {"tasks": 0, "timeouts": 0, "deaths": 0, "restarts": 0}
        # Kill the workers even if the owner forgets close() (daemon processes also die at exit).
        self._finalizer = weakref.finalize(self, _shutdown, self._workers)

    # -- public ---------------------------------------------------------------------------------

    def map(self, items: Iterable[Any], timeout_s: float | None = None) -> list[PoolResult]:
        items = list(items)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            if self._closed:
                raise PoolError("pool is closed")
            try:
                return self._run(items, timeout)
            except BaseException:
                # Busy workers would answer items of a map that no longer exists: start afresh.
                for w in list(self._workers):
                    self._retire(w, kill=True)
                raise

    def start(self) -> None:
        """Start every worker now (they import in the background) instead of on the first map."""
        with self._lock:
            if self._closed:
                raise PoolError("pool is closed")
            while len(self._workers) < self.size:
                self._spawn()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> HardTimeoutPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop -------------------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        w = _Worker(self._ctx, self.function, self.initializer)
        self._workers.append(w)
        return w

    def _retire(self, w: _Worker, kill: bool) -> None:
        self._workers.remove(w)
        if kill:
            w.kill()
        else:
            try:
                w.conn.send(None)
            except Exception:
                pass
            w.proc.join(timeout=2)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=5)
            w.conn.close()

    def _run(self, items: list[Any], timeout: float) -> list[PoolResult]:
        results: list[PoolResult | None] = [None] * len(items)
        pending = deque(range(len(items)))
        start_failures = 0

        def finish(w: _Worker, result: PoolResult) -> None:
            results[result.index] = result
            w.task = None
            w.done += 1
            self.stats["tasks"] += 1

        while pending or any(w.task is not None for w in self._workers):
            # Grow to what the remaining work can use; replaces killed and recycled workers too.
            want = min(self.size, len(pending) + sum(w.task is not None for w in self._workers))
            while len(self._workers) < want:
                self._spawn()

            # Hand items to idle ready workers; the clock starts when the item is sent.
            for w in self._workers:
                if not pending:
                    break
                if w.ready and w.task is None:
                    idx = pending.popleft()
                    try:
                        w.conn.send((idx, items[idx]))
                    except (BrokenPipeError, EOFError, OSError):
                        pending.appendleft(idx)  # the worker died idle: not this item's fault
                        self._retire(w, kill=True)
                        self.stats["restarts"] += 1
                        break
                    except Exception as e:  # the item does not pickle
                        results[idx] = PoolResult(idx, error=f"item not picklable: {type(e).__name__}: {e}")
                        continue
                    w.task, w.sent_at = idx, time.monotonic()
                    w.deadline = w.sent_at + timeout

            now = time.monotonic()
            deadlines = [w.deadline for w in self._workers if w.task is not None]
            deadlines += [w.started + self.start_timeout_s for w in self._workers if not w.ready]
            wait_s = max(0.0, min(deadlines) - now) if deadlines else 0.05
            objs: list[Any] = []
            for w in self._workers:
                if w.task is not None or not w.ready:
                    objs += [w.conn, w.proc.sentinel]
            ready = set(wait(objs, timeout=wait_s)) if objs else set()

            for w in list(self._workers):
                if w.conn in ready or w.proc.sentinel in ready:
                    got = False
                    try:
                        if w.conn.poll():  # a result sent just before dying still counts
                            msg = w.conn.recv()
                            got = True
                    except (EOFError, OSError):
                        pass
                    if got:
                        if msg[0] == "ready":
                            w.ready = True
                            start_failures = 0
                        elif msg[0] == "init_error":
                            self._retire(w, kill=True)
                            raise PoolError(f"pool workers for {self.function!r} failed to start:\n{msg[1]}")
                        else:
                            idx, ok, payload = msg
                            elapsed = time.monotonic() - w.sent_at
                            if ok:
                                finish(w, PoolResult(idx, value=payload, elapsed_s=elapsed))
                            else:
                                finish(w, PoolResult(idx, error=payload, elapsed_s=elapsed))
                            if self.max_tasks_per_worker and w.done >= self.max_tasks_per_worker:
                                self._retire(w, kill=False)  # bound memory held by caches
                        continue
                    if not w.proc.is_alive() or w.proc.sentinel in ready:
                        w.proc.join(timeout=5)
                        code = w.proc.exitcode
                        if w.task is not None:
                            idx = w.task
                            self.stats["deaths"] += 1
                            finish(w, PoolResult(idx, error=f"worker died (exit code {code})",
                                                 elapsed_s=time.monotonic() - w.sent_at))
                        elif not w.ready:
                            start_failures += 1
                            if start_failures >= _MAX_START_FAILURES:
                                self._retire(w, kill=True)
                                raise PoolError(
                                    f"pool workers for {self.function!r} keep dying at start "
                                    f"(exit code {code})"
                                )
                        self._retire(w, kill=True)
                        self.stats["restarts"] += 1

            now = time.monotonic()
            for w in list(self._workers):
                if w.task is not None and now >= w.deadline:
                    idx = w.task
                    log.warning("pool %s: item %d ran past %.1fs; killing worker %s",
                                self.function, idx, timeout, w.proc.pid)
                    self.stats["timeouts"] += 1
                    finish(w, PoolResult(idx, timed_out=True, error="timeout", elapsed_s=now - w.sent_at))
                    self._retire(w, kill=True)
                    self.stats["restarts"] += 1
                elif not w.ready and now >= w.started + self.start_timeout_s:
                    start_failures += 1
                    self._retire(w, kill=True)
                    if start_failures >= _MAX_START_FAILURES:
                        raise PoolError(f"pool workers for {self.function!r} did not start "
                                        f"within {self.start_timeout_s}s")

        return [r if r is not None else PoolResult(i, error="lost") for i, r in enumerate(results)]
