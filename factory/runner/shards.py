"""Shards and the calls that carry their requests to replicas.

The prompt set is cut into many more shards than replicas, so replicas pull work and the end of a
run never waits on one long straggler. Shards depend only on the prompt set and shard size (never
on the number of replicas), so a resumed run or a bigger cluster sees the same shards.

A shard is committed once, when all of its prompts are done. With adaptive sampling
(`sampling.stop_after_accepted`) it goes through rounds: each round asks for the next few samples
of the prompts that still need an accepted trace.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from factory.types import Completion, Prompt


@dataclass(eq=False)
class Shard:
    shard_id: int
    prompts: list[Prompt]
    tries: int = 0  # failed calls (a replica died under it)
    isolated: bool = False  # after repeated failures: its prompts go one at a time, alone on a replica
    next_sample: Counter = field(default_factory=Counter)  # prompt_id -> next sample index to ask for
    accepted: Counter = field(default_factory=Counter)  # prompt_id -> accepted traces so far
    prompt_tries: Counter = field(default_factory=Counter)  # prompt_id -> failed isolated calls
    completions: list[Completion] = field(default_factory=list)  # of the round in progress
    rows: list[Any] = field(default_factory=list)  # verified rows of finished rounds: a pa.Table each
    calls_out: int = 0

    @property
    def by_id(self) -> dict[str, Prompt]:
        return {p.prompt_id: p for p in self.prompts}

    def next_round(self, n: int, stop_after: int | None, round_size: int) -> list[tuple[Prompt, int]]:
        """The requests of the next round; empty when every prompt is done."""
        out = []
        for p in self.prompts:
            start = self.next_sample[p.prompt_id]
            if start >= n or (stop_after is not None and self.accepted[p.prompt_id] >= stop_after):
                continue
            end = min(n, start + round_size)
            out.extend((p, i) for i in range(start, end))
            self.next_sample[p.prompt_id] = end
        return out


@dataclass(eq=False)
class Call:
    """One `replica.run(requests)`: a whole round of a shard, or one prompt of an isolated shard."""

    shard: Shard
    requests: list[tuple[Prompt, int]]
    alone: bool = False  # runs with nothing else on its replica, so a crash is attributed exactly


def cut_shards(prompts: Iterable[Prompt], shard_size: int, skip: Container[int] = ()) -> Iterator[Shard]:
    """The run's shards, cut from a stream as they are asked for: shard k holds prompts
    k*shard_size.. A shard whose id is in `skip` (committed) is read past, never held."""
    held: list[Prompt] = []
    shard_id = seen = 0
    for p in prompts:
        if shard_id not in skip:
            held.append(p)
        seen += 1
        if seen == shard_size:
            if held:
                yield Shard(shard_id, held)
            shard_id, held, seen = shard_id + 1, [], 0
    if held:
        yield Shard(shard_id, held)


def shard_sizes(total: int, shard_size: int) -> Iterator[int]:
    """How many prompts each shard holds, by shard id, for `total` prompts."""
    for start in range(0, total, shard_size):
        yield min(shard_size, total - start)


def split_by_prompt(call: Call) -> list[Call]:
    groups: dict[str, list[tuple[Prompt, int]]] = {}
    for p, i in call.requests:
        groups.setdefault(p.prompt_id, []).append((p, i))
    return [Call(call.shard, reqs, alone=True) for reqs in groups.values()]
