"""The verification stage: completions of one shard -> `all` rows with every verdict.

Runs in a driver thread, off the engine's path; pool-backed verifiers (math, code) fan out to
worker processes with hard timeouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from factory.store.schema import trace_row
from factory.types import Completion, Prompt, Trace, Verdict
from factory.verifiers.base import build_verifiers
from factory.verifiers.parsing import make_trace

if TYPE_CHECKING:  # the run config sits above the verifiers: read, never imported at run time
    from factory.config import Config


class VerifyStage:
    def __init__(self, cfg: Config, workers: int):
        """`cfg`: the run config (its verifiers, teacher.expects_think_tags, answer_extraction())."""
        self.extraction = cfg.answer_extraction()
        context = {"expects_think_tags": cfg.teacher.expects_think_tags, "verify_workers": workers}
        self.verifiers = build_verifiers(cfg.verifiers, context)
        self.advisory = frozenset(v.name for v in self.verifiers if v.advisory)
        for v in self.verifiers:
            v.warm_up()

    def describe(self) -> list[dict[str, Any]]:
        return [v.describe() for v in self.verifiers]

    def rows(self, prompts: dict[str, Prompt], completions: Sequence[Completion]) -> list[dict[str, Any]]:
        return self.rows_for_traces([make_trace(prompts[c.prompt_id], c, self.extraction) for c in completions])

    def rows_for_traces(self, traces: Sequence[Trace]) -> list[dict[str, Any]]:
        per_verifier: list[list[Verdict]] = []
        for v in self.verifiers:
            if v.wants_prior:
                prior = [[pv[i] for pv in per_verifier] for i in range(len(traces))]
                per_verifier.append(v.verify_many(traces, prior=prior))  # type: ignore[call-arg]
            else:
                per_verifier.append(v.verify_many(traces))
        rows = []
        for i, trace in enumerate(traces):
            verdicts = [pv[i] for pv in per_verifier]
            err = trace.completion.error
            if err:  # the engine failed this request: its reason leads, whatever else says
                verdicts.insert(0, Verdict("engine", False, err.split(":", 1)[0]))
            elif trace.completion.finish_reason == "abort":  # stopped early: the detector leads
                verdicts.insert(0, Verdict(trace.completion.aborted_by or "early_abort", False, "aborted"))
            rows.append(trace_row(trace, verdicts, self.advisory))
        return rows

    def close(self) -> None:
        for v in self.verifiers:
            v.close()
