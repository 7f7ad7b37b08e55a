"""The engine contract and its registry.

An engine is built inside its Ray actor from plain config (never pickled with state) and streams
completions out as they finish, so the caller can keep it full.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar

from factory.registry import Registry
from factory.types import Completion, Prompt


class Engine(ABC):
    name: ClassVar[str]
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

    def info(self) -> dict:
        """Facts for the manifest (model, revision, engine version)."""
        return {}

    async def shutdown(self) -> None:
        pass


ENGINES: Registry[Engine] = Registry("engine", "factory.engines")
