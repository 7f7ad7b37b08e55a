"""The verification stage: completions of one shard -> `all` rows with every verdict.

Runs in a driver thread, off the engine's path; pool-backed verifiers (math, code) fan out to
worker processes with hard timeouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from factory.config import Config
from factory.parsing import make_trace
from factory.store.schema import trace_row
from factory.types import Completion, Prompt, Verdict
from factory.verifiers import build_verifiers


class VerifyStage:
    def __init__(self, cfg: Config, workers: int):
        self.extraction = cfg.answer_extraction()
        context = {"expects_think_tags": cfg.teacher.expects_think_tags, "verify_workers": workers}
        self.verifiers = build_verifiers(cfg.verifiers, context)

    def describe(self) -> list[dict[str, Any]]:
        return [v.describe() for v in self.verifiers]

    def rows(self, prompts: dict[str, Prompt], completions: Sequence[Completion]) -> list[dict[str, Any]]:
        traces = [make_trace(prompts[c.prompt_id], c, self.extraction) for c in completions]
        per_verifier = [v.verify_many(traces) for v in self.verifiers]
        rows = []
        for i, trace in enumerate(traces):
            verdicts = [pv[i] for pv in per_verifier]
            err = trace.completion.error
            if err:  # the engine failed this request: its reason leads, whatever else says
                verdicts.insert(0, Verdict("engine", False, err.split(":", 1)[0]))
            rows.append(trace_row(trace, verdicts))
        return rows

    def close(self) -> None:
        for v in self.verifiers:
            v.close()
