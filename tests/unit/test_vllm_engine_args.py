"""How the teacher config becomes vLLM engine arguments (no engine is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.config import load_config
from factory.engines import vllm as vllm_engine

ROOT_CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "default.yaml")


def _teacher(**overrides: object) -> dict:
    cfg = load_config(ROOT_CONFIG, [f"teacher.{k}={v}" for k, v in overrides.items()])
    return cfg.teacher.model_dump(mode="json")


@pytest.mark.parametrize("native, expected", [(True, "bfloat16"), (False, "float32")])
def test_auto_dtype_on_cpu_follows_native_bf16(monkeypatch: pytest.MonkeyPatch, native: bool, expected: str) -> None:
    monkeypatch.setattr(vllm_engine, "_has_cuda", lambda: False)
    monkeypatch.setattr(vllm_engine, "cpu_has_native_bf16", lambda: native)
    args = vllm_engine.engine_args(_teacher(dtype="auto"), 0, "/m")
    assert args["dtype"] == expected
    assert args["enforce_eager"] is True


def test_auto_dtype_on_gpu_is_left_to_vllm_and_explicit_dtypes_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm_engine, "cpu_has_native_bf16", lambda: False)
    assert vllm_engine.resolve_dtype("auto", gpu=True) == "auto"
    assert vllm_engine.resolve_dtype("bfloat16", gpu=False) == "bfloat16"
    assert vllm_engine.resolve_dtype("float16", gpu=True) == "float16"


@pytest.mark.parametrize("flags, native", [
    ("fpu sse2 avx2 fma", False),                     # AVX2 EPYC: bf16 would be the slow path
    ("fpu avx2 avx512f avx512bw avx512_vnni", False),  # AVX-512 without its bf16 extension
    ("fpu avx2 avx512f avx512_bf16", True),            # Cooper Lake, Zen 4
    ("fpu avx2 amx_tile amx_bf16", True),              # Sapphire Rapids
])
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path: Path, flags: str, native: bool) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert vllm_engine.cpu_has_native_bf16(str(info)) is native


def test_no_cpuinfo_means_float32() -> None:
    assert vllm_engine.cpu_has_native_bf16("/nonexistent/cpuinfo") is False


def test_default_config_asks_for_auto() -> None:
    assert load_config(ROOT_CONFIG, []).teacher.dtype == "auto"
