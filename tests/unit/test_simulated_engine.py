"""The simulated engine: stable draws, the length distribution asked for, truncation, its latency model."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from factory.engines import ENGINES
from factory.errors import UserError
from factory.types import Prompt


def _prompts(n: int) -> list[Prompt]:
    return [Prompt(f"p{k}", k, f"What is {k} + 1?", str(k + 1), [], "test") for k in range(n)]


def _engine(max_tokens: int = 100_000, max_num_seqs: int = 8, **kw):
    return ENGINES.get("simulated")({"engine_kwargs": kw, "max_num_seqs": max_num_seqs}, {"max_tokens": max_tokens})


async def _run(engine, requests):
    await engine.start()
    return [c async for c in engine.generate(requests)]


def test_draws_are_stable_and_follow_the_distribution() -> None:
    requests = [(p, s) for p in _prompts(500) for s in range(4)]
    a = asyncio.run(_run(_engine(time_scale=0, median_tokens=1000, sigma=0.5, chars_per_token=1), requests))
    b = asyncio.run(_run(_engine(time_scale=0, median_tokens=1000, sigma=0.5, chars_per_token=1), requests))
    assert [(c.text, c.num_tokens) for c in a] == [(c.text, c.num_tokens) for c in b]
    median = statistics.median(c.num_tokens for c in a)
    assert 900 < median < 1100
    right = sum(c.text.endswith(f"\\boxed{{{int(c.prompt_id[1:]) + 1}}}.") for c in a)
    assert 0.5 < right / len(a) < 0.7  # accuracy 0.6
    short = asyncio.run(_run(_engine(max_tokens=500, time_scale=0, median_tokens=1000), requests[:200]))
    assert {c.finish_reason for c in short} == {"stop", "length"}
    assert all(c.num_tokens <= 500 and (c.finish_reason == "length") == ("boxed" not in c.text) for c in short)


def test_latency_follows_the_tokens_per_second_model() -> None:
    # 8 requests of ~100 tokens on 4 sequences at 4,000 tokens/s (1,000 a sequence): two waves of 0.1 s.
    eng = _engine(max_num_seqs=4, median_tokens=100, sigma=0, replica_tokens_per_s=4000, prefill_s=0)
    t0 = time.perf_counter()
    out = asyncio.run(_run(eng, [(p, 0) for p in _prompts(8)]))
    took = time.perf_counter() - t0
    assert len(out) == 8 and 0.18 < took < 0.6
    assert eng.requests_done == 8 and eng.tokens_out == sum(c.num_tokens for c in out)


def test_unknown_parameter_is_a_user_error() -> None:
    with pytest.raises(UserError, match="tokens_per_sec"):
        _engine(tokens_per_sec=5)
