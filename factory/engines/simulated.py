"""A simulated teacher: completions with the lengths and latencies of a real one, and no model.

For sizing and scale runs (benchmarks/bench_scale.py): many replicas on a Ray cluster without a
GPU, so that everything around the engines (driver, verification, writes, resume) is measured at
a fleet's rate. Never a stand-in for a real engine in a test of a path users run with vLLM.

The model (`teacher.engine_kwargs`):
- a trace's length in tokens is log-normal: median `median_tokens`, spread `sigma` (log space),
  capped at `sampling.max_tokens` (then finish_reason "length", as a real engine's truncation);
- a replica decodes `replica_tokens_per_s` tokens a second in all, shared by its
  `teacher.max_num_seqs` sequences: a request takes prefill_s + tokens / (that rate / max_num_seqs);
- `time_scale` multiplies every wait (0: answer at once, to measure what feeds the engines);
- the answer is the prompt's reference with probability `accuracy`, else a wrong one;
- the text is `chars_per_token` characters a token (4: as long as a real trace's text; less keeps a
  large simulated run's files small), with the answer boxed at the end.

Each request's draws come from a stable hash of (seed, prompt_id, sample): every run agrees.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from factory.engines.base import ENGINES, Engine, as_finished
from factory.engines.seeds import stable_int
from factory.errors import UserError
from factory.types import Completion, Prompt


class SimulatedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    median_tokens: float = Field(default=3000.0, gt=0)
    sigma: float = Field(default=0.6, ge=0)
    replica_tokens_per_s: float = Field(default=2500.0, gt=0)  # a 7B teacher on one H100, batch 256
    prefill_s: float = Field(default=0.2, ge=0)
    time_scale: float = Field(default=1.0, ge=0)
    accuracy: float = Field(default=0.6, ge=0, le=1)
    chars_per_token: float = Field(default=4.0, ge=0)
    seed: int = 0


_FILLER = "Let me think about this step by step. " * 64


@ENGINES.register("simulated")
class SimulatedEngine(Engine):
    Params = SimulatedParams  # checked before any replica starts (Engine.check_config)

    def __init__(self, teacher: dict[str, Any], sampling: dict[str, Any]):
        try:
            self.p = SimulatedParams.model_validate(teacher.get("engine_kwargs") or {})
        except ValidationError as e:
            raise UserError(f"teacher.engine_kwargs for the simulated engine: {e}") from e
        self.max_tokens = int(sampling["max_tokens"])
        self.max_num_seqs = int(teacher.get("max_num_seqs") or 1)
        self._slots: asyncio.Semaphore | None = None

    async def start(self) -> None:
        self._slots = asyncio.Semaphore(self.max_num_seqs)

    def info(self) -> dict[str, Any]:
        return {"engine": "simulated", "engine_version": None, "model": "simulated",
                "simulation": self.p.model_dump()}

    def draw(self, prompt: Prompt, sample_index: int) -> tuple[int, bool]:
        """(tokens, answer right) of one request."""
        rnd = random.Random(stable_int("simulated", self.p.seed, prompt.prompt_id, sample_index, bits=62))
        tokens = int(math.exp(math.log(self.p.median_tokens) + self.p.sigma * rnd.gauss(0.0, 1.0)))
        return max(1, tokens), rnd.random() < self.p.accuracy

    def completion(self, prompt: Prompt, sample_index: int) -> Completion:
        tokens, right = self.draw(prompt, sample_index)
        truncated = tokens > self.max_tokens
        tokens = min(tokens, self.max_tokens)
        chars = int(tokens * self.p.chars_per_token)
        body = (_FILLER * (chars // len(_FILLER) + 1))[:chars]
        if truncated:
            text, finish = body, "length"
        else:
            answer = prompt.reference if right else f"{prompt.reference} + 1"
            text, finish = f"{body}\nSo the answer is \\boxed{{{answer}}}.", "stop"
        return Completion(prompt.prompt_id, sample_index, text, finish,
                          prompt_tokens=len(prompt.problem) // 4, num_tokens=tokens)

    async def _one(self, prompt: Prompt, sample_index: int) -> Completion:
        c = self.completion(prompt, sample_index)
        if self.p.time_scale > 0:
            assert self._slots is not None, "start() first"
            async with self._slots:
                per_seq = self.p.replica_tokens_per_s / self.max_num_seqs
                await asyncio.sleep(self.p.time_scale * (self.p.prefill_s + (c.num_tokens or 0) / per_seq))
        self.requests_done += 1
        self.tokens_out += c.num_tokens or 0
        return c

    async def generate(self, requests: Sequence[tuple[Prompt, int]]) -> AsyncIterator[Completion]:
        if self.p.time_scale == 0:  # no waits: no tasks either (what a scale run measures is the rest)
            for p, i in requests:
                yield await self._one(p, i)
            return
        async for c in as_finished(self._one(p, i) for p, i in requests):
            yield c
