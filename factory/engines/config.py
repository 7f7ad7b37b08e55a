"""The teacher and sampling sections of the run config: what an engine is built from.

They live beside the engines, below factory.config, so that whatever builds an engine of its own
(the LLM judge) validates the same settings without importing the whole run config.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from factory.common.section import Section
from factory.degeneration import EarlyAbortConfig


# What vLLM's --dtype accepts ("auto": the checkpoint's, or bf16/float32 on CPU).
DTYPES = ("auto", "bfloat16", "float16", "half", "float32", "float")


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

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, v: str) -> str:
        if v not in DTYPES:
            raise ValueError(f"teacher.dtype {v!r} unknown; use one of {', '.join(DTYPES)} "
                             "(e.g. --set teacher.dtype=auto)")
        return v

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
    # Early abort: the engine stops a sample as soon as a detector (repetition loop, think budget)
    # says it will be rejected; the partial sample is kept as a row (finish_reason: abort,
    # reject reason <detector>:aborted). None: every sample runs to its end. docs/early_abort.md.
    early_abort: EarlyAbortConfig | None = None

    @model_validator(mode="after")
    def _adaptive(self) -> "SamplingConfig":
        if self.stop_after_accepted is not None and self.stop_after_accepted > self.n:
            raise ValueError(f"sampling.stop_after_accepted ({self.stop_after_accepted}) cannot exceed n ({self.n})")
        budget = self.early_abort.think_budget if self.early_abort else None
        if budget is not None and budget >= self.max_tokens:
            raise ValueError(f"sampling.early_abort.think_budget ({budget}) must be below sampling.max_tokens "
                             f"({self.max_tokens}), or it never fires; set it lower or to null")
        return self
