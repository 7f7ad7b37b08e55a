"""Which backend a run gets, and the errors that say how to ask for one that fits."""

from __future__ import annotations

from pathlib import Path

import pytest

from factory.config import load_config
from factory.errors import UserError
from factory.runner.backends import resolve_backend

ROOT = Path(__file__).resolve().parents[2]


def _cfg(**run: object):
    teacher = run.pop("teacher", {})
    return load_config(ROOT / "configs/default.yaml", [f"run.{k}={v}" for k, v in run.items()]
                       + [f"teacher.{k}={v}" for k, v in teacher.items()])


@pytest.fixture(autouse=True)
def _no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def test_auto_is_local_for_one_cpu_replica_without_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("factory.engines.vllm._has_cuda", lambda: False)
    assert resolve_backend(_cfg()) == "local"


def test_auto_is_ray_where_vllm_has_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # GPU replicas keep Ray's GPU accounting and placement, even on a one-GPU machine.
    monkeypatch.setattr("factory.engines.vllm._has_cuda", lambda: True)
    assert resolve_backend(_cfg()) == "ray"


@pytest.mark.parametrize("run", [{"ray_address": "10.0.0.1:6379"}, {"teacher": {"replicas": 2}}])
def test_auto_is_ray_for_a_cluster_or_several_replicas(run: dict) -> None:
    assert resolve_backend(_cfg(**run)) == "ray"


def test_auto_is_ray_where_ray_address_is_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    assert resolve_backend(_cfg()) == "ray"


def test_explicit_backends_are_kept() -> None:
    assert resolve_backend(_cfg(backend="ray")) == "ray"
    assert resolve_backend(_cfg(backend="local")) == "local"


@pytest.mark.parametrize("run,fix", [
    ({"backend": "local", "teacher": {"replicas": 2}}, "set teacher.replicas to 1"),
    ({"backend": "local", "teacher": {"tensor_parallel_size": 2}}, "needs run.backend=ray"),
    ({"backend": "local", "ray_address": "10.0.0.1:6379"}, "set run.backend to ray"),
])
def test_local_backend_that_cannot_hold_the_run_says_what_to_change(run: dict, fix: str) -> None:
    with pytest.raises(UserError, match=fix):
        resolve_backend(_cfg(**run))


def test_backend_is_not_part_of_the_fingerprint() -> None:
    # A run started on Ray resumes on the local backend (and back): the data does not depend on it.
    assert _cfg(backend="ray").fingerprint() == _cfg(backend="local").fingerprint() == _cfg().fingerprint()


def test_ray_job_env_sends_call_results_inline_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every actor of a Ray run gets the job's env: results of up to 32 MiB come back in the call's
    reply, not through the object store (3.8x faster on the bench's cluster, no pull stalls)."""
    from factory.runner.backends.cluster import INLINE_RESULT_ENV, ray_job_env

    monkeypatch.delenv(INLINE_RESULT_ENV, raising=False)
    env = ray_job_env()
    assert env[INLINE_RESULT_ENV] == str(32 * 2**20) and env["TOKENIZERS_PARALLELISM"] == "false"
    monkeypatch.setenv(INLINE_RESULT_ENV, "1048576")
    assert ray_job_env()[INLINE_RESULT_ENV] == "1048576"
