"""The engine contract and its registry.

An engine is built inside its Ray actor from plain config (never pickled with state) and streams
completions out as they finish, so the caller can keep it full.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any, ClassVar, TypeVar

from factory.registry import Registry
from factory.types import Completion, Prompt


class Engine(ABC):
    name: ClassVar[str]
    # Whether replicas take GPUs (one per tensor x pipeline rank) when the cluster has them.
    # Engines that talk to a server, or answer from a table, run on one CPU each.
    accelerator: ClassVar[bool] = False
    # Live counters for the progress bar (read by the runner while calls are in flight).
    requests_done: int = 0
    tokens_out: int = 0

    @abstractmethod
    async def start(self) -> None:
        """Load the model. Raises on failure (fatal for the replica)."""

    @abstractmethod
    def generate(self, requests: Sequence[tuple[Prompt, int]]) -> AsyncIterator[Completion]:
        """One completion per (prompt, sample_index), yielded as each finishes.

        A failure of one request is yielded as a Completion with finish_reason="error" and
        `error` set; only a dead engine raises.
        """

    @classmethod
    def needs_accelerator(cls, teacher: dict[str, Any]) -> bool:
        """Decides how the runner sizes and places replicas; `teacher` is the teacher config."""
        return cls.accelerator

    @classmethod
    def accelerator_present(cls) -> bool:
        """Whether this machine has the accelerator the engine would use (CUDA for vLLM)."""
        return False

    @classmethod
    def cpu_replica_env(cls, cpus: int) -> dict[str, str]:
        """Environment variables a replica of this engine on `cpus` CPU cores must start with
        (the runner sets them on a Ray actor, or in its own process for the local backend)."""
        return {}

    @classmethod
    def check_config(cls, engine_kwargs: dict[str, Any]) -> None:
        """Validate `teacher.engine_kwargs` before any replica starts. Engines with a `Params`
        schema check it; others take their kwargs as they come."""
        params = getattr(cls, "Params", None)
        if params is not None:
            params.model_validate(engine_kwargs)

    @classmethod
    def preflight(cls, teacher: dict[str, Any]) -> None:
        """Checks that need this machine (is the model there?), run before any replica starts so
        that a mistake costs a one-line error, not an engine start and a traceback. Raise
        ConfigError naming the key and the fix."""

    def info(self) -> dict:
        """Facts for the manifest (model, revision, engine version)."""
        return {}

    async def shutdown(self) -> None:
        pass


T = TypeVar("T")


async def as_finished(awaitables: Iterable[Awaitable[T]]) -> AsyncIterator[T]:
    """Run all at once and yield each result as it finishes; cancel the rest if the caller stops."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        for fut in asyncio.as_completed(tasks):
            yield await fut
    finally:
        for t in tasks:
            t.cancel()
        # Collect the cancelled ones so no "exception was never retrieved" noise follows.
        await asyncio.gather(*tasks, return_exceptions=True)


ENGINES: Registry[Engine] = Registry("engine", "factory.engines")


def engine_class(name: str) -> type[Engine]:
    """The registered class; an unknown name is a ValueError listing the known ones."""
    try:
        return ENGINES.get(name)
    except KeyError as e:
        raise ValueError(str(e.args[0])) from None


def check_engine_config(name: str, engine_kwargs: dict[str, Any]) -> None:
    """Config's check of the teacher's engine: a known name, and its own check of its kwargs."""
    engine_class(name).check_config(engine_kwargs)
