"""The verifier contract and its registry.

A verifier looks at a Trace and returns a Verdict with its name, passed (True/False/None for
"cannot tell") and a short machine-readable reason. Verifiers are built from config inside the
process that runs them and may hold resources (a process pool, a sandbox); `close()` frees them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from factory.registry import Registry
from factory.types import Trace, Verdict
from factory.verifiers.parsing import DEFAULT_EXTRACTION


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Verifier(ABC):
    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = NoParams
    # Cheap verifiers run first; a trace rejected by one still gets every verdict recorded.
    version: ClassVar[str] = "1"
    # Advisory verifiers (e.g. an LLM judge) are recorded beside the others but never decide
    # acceptance.
    advisory: ClassVar[bool] = False
    # Verifiers that need the verdicts of the ones listed before them (e.g. to judge only math
    # rejects) set this and accept `prior=` in verify_many.
    wants_prior: ClassVar[bool] = False
    # Verifiers that judge against the row's reference (an answer, tests): a row without one is
    # rejected at input time (factory/sources) instead of being generated and then rejected.
    needs_reference: ClassVar[bool] = False

    @classmethod
    def check_config(cls, params: dict[str, Any], earlier: Sequence[str]) -> BaseModel:
        """Validate this verifier's parameters, where it stands in the list (`earlier`: the names
        listed before it). Raises ValueError / pydantic's ValidationError with the fix."""
        return cls.Params.model_validate(params)

    @classmethod
    def answer_extraction(cls, params: dict[str, Any]) -> str | None:
        """How this verifier wants answers taken from completions, if it has a say: the value of
        its `extraction` parameter, when its Params declare one."""
        field = cls.Params.model_fields.get("extraction")
        if field is None:
            return None
        return params.get("extraction", field.default)

    def __init__(self, params: BaseModel, context: dict[str, Any] | None = None):
        self.params = params
        self.context = context or {}  # run-level facts: teacher.expects_think_tags, workers...

    @abstractmethod
    def verify(self, trace: Trace) -> Verdict: ...

    def verify_many(self, traces: Sequence[Trace]) -> list[Verdict]:
        """Batch entry point; pool-backed verifiers override it to work in parallel."""
        return [self.verify(t) for t in traces]

    def verdict(self, passed: bool | None, reason: str | None = None) -> Verdict:
        return Verdict(self.name, passed, reason)

    def warm_up(self) -> None:
        """Start what is slow to start (worker processes) before the first traces arrive."""

    def describe(self) -> dict[str, Any]:
        """For the card and manifest: name, version, parameters."""
        return {"name": self.name, "version": self.version, "params": self.params.model_dump(mode="json")}

    def close(self) -> None:
        pass


VERIFIERS: Registry[Verifier] = Registry("verifier", "factory.verifiers")


def verifier_class(name: str) -> type[Verifier]:
    """The registered class; an unknown name is a ValueError listing the known ones."""
    try:
        return VERIFIERS.get(name)
    except KeyError as e:
        raise ValueError(str(e.args[0])) from None


def check_verifier_specs(specs: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Config's check of `verifiers:` ((name, params) in order): known names, none twice, and each
    verifier's own check of its parameters."""
    names = [name for name, _ in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"verifiers listed twice: {dupes}")
    for i, (name, params) in enumerate(specs):
        verifier_class(name).check_config(params, names[:i])


def answer_extraction(specs: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """The extraction mode of the first verifier that names one; the default ("final": the boxes
    of the final answer, or a later "final answer is" statement) when none does."""
    for name, params in specs:
        mode = verifier_class(name).answer_extraction(params)
        if mode is not None:
            return mode
    return DEFAULT_EXTRACTION


def needing_reference(names: Sequence[str]) -> list[str]:
    """The verifiers among `names` that judge against a reference (`needs_reference`)."""
    return [n for n in names if verifier_class(n).needs_reference]


def build_verifiers(specs: Sequence[Any], context: dict[str, Any] | None = None) -> list[Verifier]:
    """Build verifiers from config specs (objects with .name and .params())."""
    out: list[Verifier] = []
    for spec in specs:
        cls = VERIFIERS.get(spec.name)
        out.append(cls(cls.Params.model_validate(spec.params()), context))
    return out
