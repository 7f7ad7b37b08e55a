"""Keeps every replica full and turns shards into committed parts.

One driver thread dispatches calls and collects their completions; one verification thread turns a
finished round into rows and either commits the shard (write, then it counts) or hands it back for
another round. With verification on the cluster (verify_cluster.py) that thread hands rounds to
job threads, at most `verify_concurrency` at once, and still commits alone. Queues between them
are bounded: a slow verifier holds dispatch back instead of piling results up in memory.

Faults: a request that fails is a row with a reason (the engine does that). A replica that dies is
replaced and its calls are retried. A shard that keeps killing replicas is isolated: its prompts run
one at a time, alone on a replica, so the prompt that kills engines is found exactly, and after
`run.max_prompt_retries` it is set aside as `engine:engine_crash` rows while the run completes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from factory.config import Config
from factory.engines.base import engine_class
from factory.runner.backends.base import Backend, Replica
from factory.runner.progress import ProgressView, RunStats
from factory.runner.shards import Call, Shard, split_by_prompt
from factory.types import Completion

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, cfg: Config, backend: Backend, replicas: list[Replica],
                 verify_rows: Callable[[Shard], Any], commit: Callable[[Shard], None],
                 stats: RunStats, view: ProgressView, flush_due: Callable[[], Any] = lambda: None,
                 verify_concurrency: int = 1):
        self.cfg, self.backend, self.replicas = cfg, backend, replicas
        self.flush_due = flush_due  # writes a part whose time bound passed while no shard came
        # Rounds verified at once: 1 for the driver's own stage (its pool spreads one round over its
        # workers); on the cluster, two calls per verification actor it may grow to.
        self.verify_concurrency = max(1, verify_concurrency)
        self._stats_lock = threading.Lock()
        self.verify_rows, self.commit, self.stats, self.view = verify_rows, commit, stats, view
        s = cfg.sampling
        self.n, self.stop_after = s.n, s.stop_after_accepted
        self.round_size = s.round_size or (s.stop_after_accepted or s.n)
        # Requests kept queued per replica: enough that its scheduler never drains between calls.
        self.target = max(1, int(cfg.teacher.max_num_seqs * cfg.run.inflight_factor))
        # Adaptive sampling asks for a prompt's next samples only after its last ones are verified.
        # Once no round is waiting, that would leave engine slots idle until the verdicts come
        # back (the tail of every run, and all of a run with fewer open prompts than slots), so
        # the next samples of rounds still out are asked for ahead of their verdict instead.
        self.slots = cfg.teacher.max_num_seqs
        ahead = cfg.run.sample_ahead
        if ahead == "auto":
            ahead = engine_class(cfg.teacher.engine).accelerator
        self.ahead = self.stop_after is not None and ahead
        self.open_rounds: dict[Shard, None] = {}  # shards with a round out, oldest first
        self.fed_all = False  # every shard of the source has been taken: only then is asking ahead due
        self.calls: deque[Call] = deque()
        self.inflight: dict[Any, tuple[Replica, Call]] = {}
        self.to_verify: queue.Queue = queue.Queue(maxsize=max(4, 2 * len(replicas), verify_concurrency))
        self.back: queue.Queue = queue.Queue()  # shards needing another round, or committed (None)
        self.failure: list[BaseException] = []
        self._progress: dict[Replica, Any] = {}  # replica -> pending progress() ref
        self._progress_at = 0.0

    # ---------------------------------------------------------------- driver thread
    def run(self, shards: Iterable[Shard]) -> None:
        """Every shard to its commit. Shards are pulled from `shards` (a lazy stream) only while
        fewer requests are queued than the replicas take in: the driver holds the shards in
        flight, never the whole set."""
        feed = iter(shards)
        worker = threading.Thread(target=self._verify_loop, name="factory-verify", daemon=True)
        worker.start()
        try:
            outstanding = self._feed(feed)
            while outstanding:
                self._raise_failure()
                while True:
                    try:
                        shard = self.back.get_nowait()
                    except queue.Empty:
                        break
                    if shard.calls_out == 0 and not shard.completions and shard.rows is None:
                        outstanding -= 1  # committed
                    else:
                        self._queue_round(shard)
                outstanding += self._feed(feed)
                self._check_started()
                self._dispatch()
                if not self.inflight:
                    time.sleep(0.05)
                    continue
                for ref in self.backend.wait(list(self.inflight), timeout=0.5):
                    if ref in self.inflight:  # else a replica failure before it took its calls back
                        self._collect(ref)
                self._poll_progress()
                self.view.update()
        finally:
            # Stop the verification thread without raising here: a failure of its own is raised
            # below, and an error of the loop above must not be masked by it.
            if worker.is_alive():
                try:
                    self.to_verify.put(None, timeout=60)
                except queue.Full:
                    pass
                worker.join(timeout=60)
        self._raise_failure()

    def _feed(self, feed: Iterator[Shard]) -> int:
        """Queue first rounds of new shards until the queued requests would fill every replica
        once more (backpressure on the source); returns how many shards were taken."""
        if self.fed_all:  # the rest of the run costs nothing here
            return 0
        want = max(1, len(self.replicas)) * self.target
        queued = sum(len(c.requests) for c in self.calls)  # once a loop, then counted as shards go in
        taken = 0
        while queued < want:
            shard = next(feed, None)
            if shard is None:
                self.fed_all = True
                break
            queued += self._queue_round(shard)
            taken += 1
        return taken

    def _poll_progress(self) -> None:
        """Live tokens/s from the engines, without ever blocking the dispatch loop on them."""
        now = time.perf_counter()
        if now - self._progress_at < 1.0:
            return
        self._progress_at = now
        for rep in self.replicas:
            ref = self._progress.get(rep)
            if ref is not None:
                if not self.backend.wait([ref], timeout=0):
                    continue
                try:
                    rep.progress = self.backend.get(ref)
                except Exception:
                    pass
            self._progress[rep] = self.backend.call(rep, "progress")
        self.stats.live_requests = sum(r.progress[0] for r in self.replicas) + self.stats.retired_requests
        self.stats.live_tokens = sum(r.progress[1] for r in self.replicas) + self.stats.retired_tokens

    def _queue_round(self, shard: Shard) -> int:
        """Queue the shard's next round; returns how many requests it holds."""
        requests = shard.next_round(self.n, self.stop_after, self.round_size)
        if not requests:  # nothing left to ask: verify an empty round, which commits the shard
            self._put(shard)
            return 0
        call = Call(shard, requests)
        new = split_by_prompt(call) if shard.isolated else [call]
        shard.calls_out += len(new)
        self.calls.extend(new)
        if not shard.isolated:
            self.open_rounds[shard] = None
        return len(requests)

    def _ask_ahead(self, room: int) -> None:
        """Fill `room` idle engine slots with the next samples of prompts whose round is still out.

        They join that round (it is verified when all of its calls are back), so a prompt never
        gets more than n samples and a shard still commits once. A sample asked for this way is
        wasted only when an earlier one of its prompt is accepted; a slot left idle is always
        wasted. Never while the source has shards left or a round waits to go out: new prompts and
        verified next rounds come first.
        """
        for shard in list(self.open_rounds):
            if room <= 0:
                return
            if shard.isolated:  # its prompts run one at a time, alone: nothing rides along
                continue
            requests = shard.next_round(self.n, self.stop_after, self.round_size)
            if not requests:
                continue
            shard.calls_out += 1
            self.calls.append(Call(shard, requests))
            self.stats.asked_ahead += len(requests)
            room -= len(requests)

    def _check_started(self) -> None:
        """A replacement replica joins once its engine is loaded; the others work meanwhile."""
        for rep in self.replicas:
            if not rep.started:
                if self.backend.wait([rep.ready_ref], timeout=0):
                    rep.info = self.backend.get(rep.ready_ref)  # a replica that cannot start is fatal
                    rep.started = True

    def _dispatch(self) -> None:
        self._place()
        if self.ahead and self.fed_all and not self.calls:
            room = sum(max(0, self.slots - rep.inflight) for rep in self.replicas if rep.started and not rep.alone)
            if room:
                self._ask_ahead(room)
                self._place()

    def _place(self) -> None:
        for rep in self.replicas:
            while rep.started and self.calls and not rep.alone:
                call = self.calls[0]
                if call.alone:
                    if rep.calls:  # an isolated call waits for an idle replica
                        break
                    rep.alone = True
                elif rep.calls and rep.inflight >= self.target:
                    break
                self.calls.popleft()
                self.inflight[self.backend.call(rep, "run", call.requests)] = (rep, call)
                rep.inflight += len(call.requests)
                rep.calls += 1
                if self.stats.gen_started is None:
                    self.stats.gen_started = time.perf_counter()
                    self.stats.first_request_at = time.time()

    def _collect(self, ref: Any) -> None:
        rep, call = self.inflight.pop(ref)
        rep.inflight -= len(call.requests)
        rep.calls -= 1
        rep.alone = False
        try:
            completions: list[Completion] = self.backend.get(ref)
        except Exception as e:
            if not self.backend.is_replica_failure(e):
                raise
            self._replica_failed(rep, call, e)
            return
        self._call_done(call, completions)

    def _call_done(self, call: Call, completions: list[Completion]) -> None:
        shard = call.shard
        self.stats.last_completion_at = time.perf_counter()
        shard.completions.extend(completions)
        shard.calls_out -= 1
        if shard.calls_out == 0:
            self.open_rounds.pop(shard, None)
            self._put(shard)

    def _replica_failed(self, rep: Replica, call: Call, err: BaseException) -> None:
        """Replace the replica; every call it held is retried (none of them was committed)."""
        log.warning("replica failed (%s: %s); replacing it", type(err).__name__, str(err).splitlines()[0][:200])
        lost = [call] + [c for ref, (r, c) in list(self.inflight.items()) if r is rep]
        for ref in [ref for ref, (r, _) in self.inflight.items() if r is rep]:
            self.inflight.pop(ref)
        self.backend.stop(rep)
        self.replicas.remove(rep)
        self._progress.pop(rep, None)
        self.stats.retired_requests += rep.progress[0]
        self.stats.retired_tokens += rep.progress[1]
        self.replicas.append(self.backend.spawn())  # starts in the background; see _check_started
        for c in lost:
            self._retry(c, err)

    def _retry(self, call: Call, err: BaseException) -> None:
        shard, cfg = call.shard, self.cfg.run
        if call.alone:  # the only call on its replica: this prompt killed it
            pid = call.requests[0][0].prompt_id
            shard.prompt_tries[pid] += 1
            if shard.prompt_tries[pid] > cfg.max_prompt_retries:
                log.warning("prompt %s killed the engine %d times; set aside", pid, shard.prompt_tries[pid])
                reason = f"engine_crash: killed the engine {shard.prompt_tries[pid]} times ({type(err).__name__})"
                self._call_done(call, [Completion(p.prompt_id, i, "", "error", error=reason) for p, i in call.requests])
            else:
                self.calls.appendleft(call)
            return
        shard.tries += 1
        if shard.tries > cfg.max_shard_retries:
            if not shard.isolated:
                log.warning("shard %d failed %d times; running its prompts one at a time", shard.shard_id, shard.tries)
            shard.isolated = True
            parts = split_by_prompt(call)
            shard.calls_out += len(parts) - 1
            self.calls.extendleft(reversed(parts))
        else:
            self.calls.appendleft(call)

    def _put(self, item: Shard | None) -> None:
        while True:
            self._raise_failure()
            try:
                self.to_verify.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _raise_failure(self) -> None:
        if self.failure:
            raise self.failure[0]

    # ---------------------------------------------------------------- verification thread
    def _verify_loop(self) -> None:
        jobs = None
        if self.verify_concurrency > 1:
            from concurrent.futures import ThreadPoolExecutor

            jobs = ThreadPoolExecutor(self.verify_concurrency, thread_name_prefix="factory-verify")
        slots = threading.Semaphore(self.verify_concurrency)
        try:
            while True:
                try:
                    shard = self.to_verify.get(timeout=1.0)
                except queue.Empty:
                    self.flush_due()
                    continue
                if shard is None:
                    return
                if shard.completions:
                    if jobs is None:
                        self._verify(shard)
                    else:  # a free slot first: at most verify_concurrency rounds out at once
                        while not slots.acquire(timeout=0.5):
                            if self.failure:
                                return
                        jobs.submit(self._verify_job, shard, slots)
                    continue
                self.commit(shard)  # write, then mark: the part's commit is the shard's
                self.stats.prompts_done += len(shard.prompts)
                shard.rows = None  # type: ignore[assignment]  # released; marks "committed" for the driver
                self.back.put(shard)
        except BaseException as e:
            self.failure.append(e)
        finally:
            if jobs is not None:
                jobs.shutdown(wait=not self.failure, cancel_futures=True)

    def _verify_job(self, shard: Shard, slots: threading.Semaphore) -> None:
        try:
            self._verify(shard)
        except BaseException as e:
            self.failure.append(e)
        finally:
            slots.release()

    def _verify(self, shard: Shard) -> None:
        table = self.verify_rows(shard)  # PART_SCHEMA rows, built where they were verified
        shard.completions = []
        for pid, ok in zip(table["prompt_id"].to_pylist(), table["accepted"].to_pylist()):
            if ok:
                shard.accepted[pid] += 1
        shard.rows.append(table)
        with self._stats_lock:
            self.stats.add_table(table)
        self.back.put(shard)  # the driver decides: another round, or (empty round) commit
