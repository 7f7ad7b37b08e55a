"""Every mistake a user can fix: one line naming the key and the fix, exit 2, no traceback, no engine.

Run as a user runs them: the real CLI in a subprocess (so the exit code, stderr and the absence of a
traceback are what a terminal would show). Each case fails in preflight, in about a second.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from factory.config import load_config
from factory.runner.driver import generate

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "factory.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def gen(tmp_path: Path, *sets: str) -> subprocess.CompletedProcess:
    args = ["generate", str(REPO / "configs/default.yaml"), "--set", f"output.store={tmp_path / 'store'}"]
    for s in sets:
        args += ["--set", s]
    return cli(*args)


@pytest.mark.parametrize("setting,expect", [
    ("teacher.model=/nonexistent/model", "teacher.model /nonexistent/model: not a directory"),
    ("teacher.model=builtin:smollm3", "--set teacher.model=builtin:smollm2-135m-instruct"),
    ("teacher.model=someorg/never-downloaded", "HF_HUB_OFFLINE is set"),
    ("teacher.dtype=bf17", "teacher.dtype 'bf17' unknown"),
    ("source.path=.", "is a directory"),
    ("output.store=/proc/no-store-here", "output.store: cannot write to /proc/no-store-here"),
])
def test_mistake_is_one_line_before_any_engine(tmp_path: Path, setting: str, expect: str) -> None:
    extra = ("source.builtin=null",) if setting.startswith("source.path") else ()
    proc = cli("generate", str(REPO / "configs/default.yaml"), "--set", setting,
               *(x for e in extra for x in ("--set", e)),
               *(() if setting.startswith("output.store") else ("--set", f"output.store={tmp_path / 'store'}")))
    assert proc.returncode == 2, proc.stderr
    assert expect in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) <= 2 and lines[0].startswith("factory generate: "), proc.stderr  # config errors: header + key


def test_unreachable_hub_model_without_offline_mode(tmp_path: Path) -> None:
    """No HF_HUB_OFFLINE: factory asks the Hub (no network in CI: it cannot reach it; with network,
    the repo does not exist) and says which, in one line, instead of vLLM's traceback a minute later."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(PYTHONPATH=str(REPO), HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run([sys.executable, "-m", "factory.cli", "generate", str(REPO / "configs/default.yaml"),
                           "--set", "teacher.model=factory-tests/no-such-model", "--set",
                           f"output.store={tmp_path / 'store'}"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("factory generate: teacher.model 'factory-tests/no-such-model': ")
    assert "cannot reach the Hugging Face Hub" in proc.stderr or "no such model on the Hugging Face Hub" in proc.stderr


def test_store_whose_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    proc = gen(tmp_path, f"output.store={tmp_path / 'afile' / 'store'}")
    assert proc.returncode == 2 and "output.store: cannot write to" in proc.stderr and "Traceback" not in proc.stderr


def test_pull_errors_say_factory_pull() -> None:
    proc = cli("pull", "not a repo")
    assert proc.returncode == 2 and proc.stderr.startswith("factory pull: ") and "Traceback" not in proc.stderr


def _scripted(tmp_path: Path, limit: int = 4):
    return load_config(None, data={
        "source": {"builtin": "arithmetic", "limit": limit},
        "teacher": {"engine": "scripted", "engine_kwargs": {"default": "So \\boxed{4}"}},
        "sampling": {"n": 1, "max_tokens": 50},
        "run": {"shard_size": 2, "progress": False, "backend": "local"},
        "output": {"store": str(tmp_path / "store"), "name": "ds"}, "prefilter": None})


def test_versions_of_a_store_lists_its_datasets_and_runs_cleans_up(tmp_path: Path) -> None:
    r = generate(_scripted(tmp_path))
    proc = cli("versions", str(tmp_path / "store"))
    assert proc.returncode == 0 and "datasets in the store" in proc.stdout and "ds" in proc.stdout, proc.stderr
    proc = cli("runs", str(tmp_path / "store" / "ds"))
    assert proc.returncode == 0 and r.run_dir.name in proc.stdout and "published v1" in proc.stdout, proc.stderr
    assert any((r.run_dir / "parts").iterdir())
    proc = cli("runs", str(tmp_path / "store" / "ds"), "--prune")
    assert proc.returncode == 0 and "freed" in proc.stdout and "parts pruned" in proc.stdout, proc.stderr
    assert not (r.run_dir / "parts").exists() and (r.run_dir / "run.json").is_file()
    # The version is untouched, and the next run does not reuse the pruned run's number.
    assert generate(_scripted(tmp_path)).run_dir.name != r.run_dir.name
    proc = cli("runs", str(tmp_path / "store" / "ds"), "--remove", r.run_dir.name)
    assert proc.returncode == 0 and not r.run_dir.exists()


def test_noop_incremental_says_so_and_leaves_no_run(tmp_path: Path) -> None:
    first = generate(_scripted(tmp_path))
    # One "engine ready" figure: the card's teacher table shows the summary's number.
    assert first.manifest["teacher"]["ready_s"] == first.manifest["run_stats"]["engine_ready_s"] is not None
    cfg = _scripted(tmp_path)
    cfg.output.incremental = True
    r = generate(cfg)
    assert not r.new_version and r.version_dir.name == "v1" and not r.run_dir.exists()


def test_summary_says_none_accepted_instead_of_zero_seconds() -> None:
    from rich.console import Console

    from factory.runner.progress import summary_table

    console = Console(width=200, record=True)
    console.print(summary_table({"counts": {"accepted": 0}, "run_stats": {"first_accept_s": None, "wall_s": 3.0}}))
    text = console.export_text()
    assert "- (none accepted)" in text and "first accepted trace (s)" in text


def test_ctrl_c_prints_the_clean_message_and_no_traceback(tmp_path: Path) -> None:
    """Ctrl-C reaches the whole process group (the driver, its verification workers, an engine's
    processes); the terminal shows the one clean message, the children's tracebacks go to the log."""
    import signal
    import time

    args = [sys.executable, "-m", "factory.cli", "generate", str(REPO / "configs/default.yaml"),
            "--set", f"output.store={tmp_path / 'store'}", "--set", "teacher.engine=scripted",
            "--set", "teacher.engine_kwargs.delay_s=60", "--set", "run.backend=local", "--set", "source.limit=40",
            "--set", "run.shard_size=2", "--set", "sampling.n=1"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # A terminal's Ctrl-C finds SIGINT at its default. A test suite started in the background of a
    # non-interactive shell (`make test &`, nohup) inherits SIGINT ignored, and Python then installs
    # no KeyboardInterrupt handler at all: the driver would never see the signal.
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        runs = tmp_path / "store" / "default-arithmetic" / ".runs"
        while time.monotonic() < deadline and not any(runs.glob("*/factory.log")):
            time.sleep(0.2)
        time.sleep(3)  # the verification workers and the engine are up and busy
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "interrupted: committed parts are kept" in err
    assert "Traceback" not in err + out and "KeyboardInterrupt" not in err + out, err
