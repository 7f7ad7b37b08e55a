"""A scripted engine that answers from a table: fast unit tests of the runner, verifiers and store.

Never the only test of a path users run with vLLM. `answers` maps a problem to a completion text
(or a list, one per sample index); unknown problems get `default`. A text of "!error" becomes a
per-request error, "!dead" raises EngineDeadError (the runner must replace the replica), "!exit"
ends the replica's process at once (as an OOM kill or a segfault would). With
`sampling.early_abort` each word is one token, watched as the vLLM engine watches its stream.

`engine_kwargs: {gpu: true}` makes it stand in for a GPU engine: the runner sizes and places its
replicas as it would vLLM's (GPUs, placement groups), so placement is testable on a cluster whose
nodes announce logical GPUs (`ray start --num-gpus=2`) without having any.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

from factory.degeneration import AbortWatch, EarlyAbortConfig
from factory.engines.base import ENGINES, Engine
from factory.types import Completion, Prompt


class EngineDeadError(RuntimeError):
    pass


@ENGINES.register("scripted")
class ScriptedEngine(Engine):
    def __init__(self, teacher: dict[str, Any], sampling: dict[str, Any]):
        kw = teacher.get("engine_kwargs") or {}
        self.answers: dict[str, str | list[str]] = kw.get("answers", {})
        self.default: str = kw.get("default", "I do not know.")
        self.delay_s: float = float(kw.get("delay_s", 0.0))
        self.max_tokens = sampling["max_tokens"]
        early = sampling.get("early_abort")
        self.early_abort = EarlyAbortConfig.model_validate(early) if early else None

    @classmethod
    def needs_accelerator(cls, teacher: dict[str, Any]) -> bool:
        return bool((teacher.get("engine_kwargs") or {}).get("gpu", False))

    async def start(self) -> None:
        pass

    def info(self) -> dict[str, Any]:
        return {"engine": "scripted", "engine_version": None, "model": "scripted"}

    def _text(self, prompt: Prompt, sample_index: int) -> str:
        a = self.answers.get(prompt.problem, self.default)
        return a[sample_index % len(a)] if isinstance(a, list) else a

    async def generate(self, requests: Sequence[tuple[Prompt, int]]) -> AsyncIterator[Completion]:
        for prompt, i in requests:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            text = self._text(prompt, i)
            if text == "!dead":
                raise EngineDeadError("scripted engine died")
            if text == "!exit":
                os._exit(1)
            if text == "!error":
                yield Completion(prompt.prompt_id, i, "", "error", error="ScriptedError: requested")
                continue
            words = text.split()
            truncated = len(words) > self.max_tokens
            tokens = min(len(words), self.max_tokens)
            finish, aborted_by = "length" if truncated else "stop", None
            if self.early_abort is not None:  # one word is one token; the text grows word by word
                watch = AbortWatch(self.early_abort)
                for k in range(1, tokens + 1):
                    if watch.due(k):
                        aborted_by = watch.check(" ".join(words[:k]), k)
                        if aborted_by:
                            tokens, finish = k, "abort"
                            break
            self.requests_done += 1
            self.tokens_out += tokens
            yield Completion(
                prompt.prompt_id, i, " ".join(words[:tokens]) if finish != "stop" else text,
                finish, prompt_tokens=len(prompt.problem.split()), num_tokens=tokens, aborted_by=aborted_by,
            )
