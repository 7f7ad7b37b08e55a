"""Cutting the prompt set into shards: many more shards than replicas, so replicas pull work and
the end of a run never waits on one long straggler. Depends only on the prompt set and shard size
(never on the number of replicas), so a resumed run or a bigger cluster sees the same shards."""

from __future__ import annotations

from dataclasses import dataclass

from factory.types import Prompt


@dataclass(slots=True)
class Shard:
    shard_id: int
    prompts: list[Prompt]
    tries: int = 0

    def requests(self, n: int) -> list[tuple[Prompt, int]]:
        return [(p, i) for p in self.prompts for i in range(n)]


def make_shards(prompts: list[Prompt], shard_size: int) -> list[Shard]:
    return [Shard(k // shard_size, prompts[k : k + shard_size]) for k in range(0, len(prompts), shard_size)]
