"""The run config: YAML in, a validated typed tree out. Unknown keys are errors.

Every check that can fail before an engine starts fails here, with the fix in the message.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from factory.common.files import load_yaml_file
from factory.errors import ConfigError
from factory.prefilter.config import PrefilterConfig

__all__ = ["Config", "ConfigError", "load_config", "apply_overrides"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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

    @model_validator(mode="after")
    def _exactly_one(self) -> "SourceConfig":
        given = [k for k in ("builtin", "path", "dataset") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of source.builtin, source.path or source.dataset "
                f"(got {given or 'none'})"
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


class TeacherConfig(Section):
    engine: str = "vllm"
    # A local directory, a Hub id, or "builtin:smollm2-135m-instruct" (converted once, cached).
    model: str = "builtin:smollm2-135m-instruct"
    revision: str | None = None
    # "auto": the checkpoint's dtype on a GPU; on CPU bf16 where the CPU has it natively, else float32.
    dtype: str = "bfloat16"
    max_model_len: int = Field(default=4096, ge=16)
    tensor_parallel_size: int = Field(default=1, ge=1)
    pipeline_parallel_size: int = Field(default=1, ge=1)
    replicas: int | Literal["auto"] = "auto"  # auto: one per GPU group, or one on CPU
    # On CPU vLLM reads this as a fraction of RAM: 0.92 fails on a 24 GiB machine, 0.4 works.
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    # vLLM's default of 1024 running sequences overflows its largest CUDA graph (512) and runs
    # about 40% slower on an H100 with n=4; 512 keeps it inside.
    max_num_seqs: int = Field(default=256, ge=1)
    cpus_per_replica: int | None = Field(default=None, ge=1)  # CPU replicas: default all cores
    expects_think_tags: bool = False  # the teacher writes <think>...</think> (R1 and its distills)
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)  # passed through to the engine

    @field_validator("replicas")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("teacher.replicas must be >= 1 or 'auto'")
        return v


class SamplingConfig(Section):
    n: int = Field(default=4, ge=1)
    temperature: float = Field(default=0.6, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_tokens: int = Field(default=2048, ge=1)
    seed: int = 0
    ignore_eos: bool = False  # benchmarks only: every request runs to max_tokens
    # Adaptive sampling: ask in rounds and stop a prompt once this many traces are accepted
    # (or n is reached). None: always n samples.
    stop_after_accepted: int | None = Field(default=None, ge=1)
    round_size: int | None = Field(default=None, ge=1)  # samples per round; default stop_after_accepted

    @model_validator(mode="after")
    def _adaptive(self) -> "SamplingConfig":
        if self.stop_after_accepted is not None and self.stop_after_accepted > self.n:
            raise ValueError(f"sampling.stop_after_accepted ({self.stop_after_accepted}) cannot exceed n ({self.n})")
        return self


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
    verify_workers: int | Literal["auto"] = "auto"
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
        # Verifier names and parameters are checked by each verifier's own schema.
        from factory.verifiers import VERIFIERS

        names = [v.name for v in self.verifiers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"verifiers listed twice: {dupes}")
        for spec in self.verifiers:
            try:
                cls = VERIFIERS.get(spec.name)
            except KeyError as e:
                raise ValueError(str(e.args[0])) from None
            cls.Params.model_validate(spec.params())
        for i, spec in enumerate(self.verifiers):
            if spec.name == "llm_judge":
                after = spec.params().get("only_after", "math")
                if after is not None and after not in names[:i]:
                    raise ValueError(f"verifiers: llm_judge judges {after!r} rejects; list {after!r} before llm_judge")
        from factory.engines import ENGINES

        try:
            engine_cls = ENGINES.get(self.teacher.engine)
        except KeyError as e:
            raise ValueError(str(e.args[0])) from None
        params = getattr(engine_cls, "Params", None)
        if params is not None:  # engines with a schema check their kwargs before Ray starts
            params.model_validate(self.teacher.engine_kwargs)
        return self

    def answer_extraction(self) -> str:
        """How answers are pulled out of completions: the math verifier's `extraction`, or boxed."""
        for spec in self.verifiers:
            if spec.name == "math":
                return spec.params().get("extraction", "boxed")
        return "boxed"

    def fingerprint(self) -> str:
        """A stable hash of what decides the generated data (not where it is written)."""
        data = self.model_dump(mode="json", exclude={"run": {"progress", "ray_address", "backend", "placement_timeout_s", "part_mb", "part_seconds"},
                                                     "output": True, "publish": True})
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
