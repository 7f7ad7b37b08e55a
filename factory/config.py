"""The run config: YAML in, a validated typed tree out. Unknown keys are errors.

Every check that can fail before an engine starts fails here, with the fix in the message.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from factory.common.files import load_yaml_file
from factory.common.section import Section
from factory.engines.base import check_engine_config
from factory.engines.config import SamplingConfig, TeacherConfig
from factory.errors import ConfigError
from factory.prefilter.config import PrefilterConfig
from factory.verifiers.base import answer_extraction, check_verifier_specs, needing_reference

# TeacherConfig and SamplingConfig live in factory.engines.config; named here for the run config's users.
__all__ = ["Config", "ConfigError", "SamplingConfig", "Section", "TeacherConfig", "VerifierSpec", "apply_overrides",
           "load_config"]


class ColumnsConfig(Section):
    problem: str = "problem"
    reference: str | None = "answer"  # None: problems without a reference (no math check possible)
    id: str | None = None  # a stable id column; default is a content hash of the problem


class SourceConfig(Section):
    """Where the problems come from: exactly one of builtin, path, dataset."""

    builtin: str | None = None  # a prompt set shipped with factory, e.g. "arithmetic"
    path: str | None = None  # local .jsonl / .json / .parquet file
    dataset: str | None = None  # Hub dataset id, e.g. "AI-MO/NuminaMath-1.5"
    subset: str | None = None
    split: str = "train"
    revision: str | None = None
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)
    limit: int | None = Field(default=None, ge=1)
    shuffle_seed: int | None = None
    # The input policy: unusable rows (not UTF-8, malformed, no problem, no reference where a
    # verifier needs one) are rejected before generation and counted. A few in a large scraped file
    # are normal; more than 1% usually means the wrong encoding, column or file, and a dataset
    # silently built from what remains, so the run stops before any engine starts.
    max_rejected_fraction: float = Field(default=0.01, ge=0, le=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> "SourceConfig":
        given = [k for k in ("builtin", "path", "dataset") if getattr(self, k)]
        if not given:
            raise ValueError("set one of source.builtin, source.path or source.dataset, "
                             "e.g. --set source.path=problems.jsonl")
        if len(given) > 1:
            unset = " ".join(f"--set source.{k}=null" for k in given[:-1])
            raise ValueError(
                f"set exactly one of source.builtin, source.path or source.dataset (got {', '.join(given)}); "
                f"to keep source.{given[-1]}, unset the other with {unset}"
            )
        return self


class PromptConfig(Section):
    system: str | None = None
    # {problem} is replaced by the problem text; no other fields are formatted.
    template: str = "{problem}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."

    @field_validator("template")
    @classmethod
    def _has_problem(cls, v: str) -> str:
        if "{problem}" not in v:
            raise ValueError("prompt.template must contain {problem}")
        try:
            v.format(problem="x")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"prompt.template is not a valid format string ({e}); write literal braces as {{{{ }}}}"
            ) from None
        return v


class VerifierSpec(Section):
    """One verifier: its registered name plus its own parameters (checked by the verifier)."""

    model_config = ConfigDict(extra="allow")
    name: str

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RunConfig(Section):
    shard_size: int = Field(default=8, ge=1)  # prompts per shard; many more shards than replicas
    # Requests kept queued per replica, as a multiple of teacher.max_num_seqs, so the engine never
    # drains while the driver verifies and writes.
    inflight_factor: float = Field(default=2.0, ge=1.0)
    # Adaptive sampling (sampling.stop_after_accepted): once no round waits to go out, fill idle
    # engine slots with the next samples of prompts whose verdict is still pending, instead of
    # leaving the slots idle until it comes (docs/yield.md). auto: on for
    # engines that own their slots (vLLM), off for servers billed per token (openai).
    sample_ahead: bool | Literal["auto"] = "auto"
    verify_workers: int | Literal["auto"] = "auto"
    # Where traces are verified. driver: worker processes on the driver's machine. cluster (Ray
    # backend): verification actors spread over the CPUs the replicas leave free on every node,
    # more of them while completions arrive faster than they are verified. auto: cluster on the Ray
    # backend when the cluster has a free CPU, else driver.
    verify_on: Literal["auto", "driver", "cluster"] = "auto"
    verify_actor_cpus: int = Field(default=1, ge=1)  # CPUs (worker processes) per verification actor
    ray_address: str | None = None  # default: $RAY_ADDRESS, else a local Ray instance
    # Where replicas run. ray: Ray actors (any node, GPUs, placement groups). local: one replica in
    # this process, no Ray daemons beside the engine. auto: local for one replica on a machine
    # without a GPU and no Ray address; else ray.
    backend: Literal["auto", "ray", "local"] = "auto"
    # A shard whose replica died more often than this has its prompts run one at a time, alone on
    # a replica; a prompt that still kills the engine more than max_prompt_retries times is set
    # aside (rows with reason engine:engine_crash) and the run completes.
    max_shard_retries: int = Field(default=1, ge=0)
    max_prompt_retries: int = Field(default=1, ge=0)
    progress: bool = True
    # How long a multi-GPU replica's placement group may wait for its GPUs before the run fails
    # (saying what the cluster has); an autoscaling cluster may need longer to add nodes.
    placement_timeout_s: float = Field(default=600.0, gt=0)
    # Parts: the rows of many shards in one Parquet file, written once this many MB of rows (in
    # memory; the zstd file is several times smaller) or this many seconds of work are gathered.
    # A crash loses at most what was gathered; resume redoes it. 0 s: a part per shard.
    part_mb: float = Field(default=64.0, gt=0)
    part_seconds: float = Field(default=60.0, ge=0)
    # Price of one device-hour (a GPU, or a CPU engine's machine): the manifest, card and summary
    # then show an estimated cost of the run (engine-hours x devices per engine x this price).
    gpu_hour_price: float | None = Field(default=None, ge=0)


class OutputConfig(Section):
    store: str = "factory-store"  # local dataset store (relative to the working directory)
    name: str = "default"
    # Generate only prompts not in the latest version; the new version holds its rows plus the new.
    incremental: bool = False
    # The dataset's license for the card; None shows "other": it depends on the teacher's and the
    # prompt source's terms, which factory cannot know.
    license: str | None = None

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not v or "/" in v or v.startswith("."):
            raise ValueError("output.name must be a plain folder name (no '/', not starting with '.')")
        return v


class PublishConfig(Section):
    """Push each new version to the Hugging Face Hub when `factory generate` finishes."""

    repo: str  # ORG/NAME
    private: bool = False

    @field_validator("repo")
    @classmethod
    def _repo_id(cls, v: str) -> str:
        if v.count("/") != 1 or not all(v.split("/")):
            raise ValueError(f"publish.repo must look like ORG/NAME, got {v!r}")
        return v


class Config(Section):
    source: SourceConfig
    # Dedup and decontamination run before generation: no GPU time is spent on removed prompts.
    prefilter: PrefilterConfig | None = Field(default_factory=PrefilterConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    verifiers: list[VerifierSpec] = Field(
        default_factory=lambda: [VerifierSpec(name="truncation"), VerifierSpec(name="math")]
    )
    run: RunConfig = Field(default_factory=RunConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    publish: PublishConfig | None = None

    @model_validator(mode="after")
    def _cross_checks(self) -> "Config":
        if self.sampling.max_tokens >= self.teacher.max_model_len:
            raise ValueError(
                f"sampling.max_tokens ({self.sampling.max_tokens}) must be below "
                f"teacher.max_model_len ({self.teacher.max_model_len}) to leave room for the prompt"
            )
        # Each verifier and engine checks its own parameters; config names none of them.
        check_verifier_specs([(v.name, v.params()) for v in self.verifiers])
        check_engine_config(self.teacher.engine, self.teacher.engine_kwargs)
        return self

    def verifiers_needing_reference(self) -> list[str]:
        """Verifiers that can judge nothing without a reference: rows lacking one are rejected at input."""
        return needing_reference([v.name for v in self.verifiers])

    def answer_extraction(self) -> str:
        """How answers are pulled out of completions (the verifiers say; default "final")."""
        return answer_extraction([(v.name, v.params()) for v in self.verifiers])

    def fingerprint(self) -> str:
        """A stable hash of what decides the generated data (not where it is written)."""
        data = self.model_dump(mode="json", exclude={"run": {"progress", "ray_address", "backend", "placement_timeout_s",
                                                             "part_mb", "part_seconds", "gpu_hour_price",
                                                             "verify_on", "verify_actor_cpus"},
                                                     "output": True, "publish": True,
                                                     # a gate on the input, not part of what is generated
                                                     "source": {"max_rejected_fraction"}})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def _parse_value(raw: str) -> Any:
    """`--set a.b=VALUE`: VALUE is read as YAML, so 4, 0.6, true, null and [a, b] work."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set sampling.n=8")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
            node = child
        node[parts[-1]] = _parse_value(raw)
    return data


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = [f"invalid config {origin}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see configs/default.yaml for every key)"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def load_config(path: str | Path | None, overrides: list[str] | None = None, origin: str | None = None,
                data: dict[str, Any] | None = None) -> Config:
    """Read YAML (or take `data`), apply `--set` overrides, validate. Raises ConfigError."""
    if data is None:
        p = Path(path)  # type: ignore[arg-type]
        data = load_yaml_file(p, missing_hint="; the configs shipped are in configs/")
        origin = origin or str(p)
    if not isinstance(data, dict):
        raise ConfigError(f"config {origin} must be a mapping at the top level")
    data = apply_overrides(data, overrides or [])
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, origin or "<dict>")) from None
