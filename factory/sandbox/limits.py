"""The sandbox's vocabulary: limits, results, errors, and how one isolation mode launches
(interpreter, uid, environment, bubblewrap arguments). The package docstring says why.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from typing import Literal

Isolation = Literal["bubblewrap", "rlimits"]
Status = Literal["ok", "timeout", "memory", "output_limit", "runtime_error", "killed"]

# Fresh uids for root-launched runs: far above any real account, one per run.
_UID_BASE = 1_100_000
_UID_SPAN = 800_000
STDERR_TAIL = 4096
STARTUP_GRACE_S = 30.0  # sandbox setup (not the code) gets this long before it counts as broken
_SECRET_HOME_PATHS = (  # hidden from the sandbox when it runs as the caller's own uid
    ".cache/huggingface", ".huggingface", ".ssh", ".aws", ".config/gcloud", ".docker", ".kube",
    ".netrc", ".git-credentials", ".pypirc",
)


class SandboxError(RuntimeError):
    """The sandbox itself could not start (not the code's fault): the run proves nothing."""


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    timeout_s: float = 4.0  # wall clock of the code: from the end of sandbox setup to exit
    cpu_s: float | None = None  # RLIMIT_CPU; default: the wall limit rounded up, plus one
    memory_mb: int = 512  # RLIMIT_AS of each process
    max_processes: int = 16  # every task (threads too) the code may have at once
    max_output_bytes: int = 1 << 20  # captured stdout; more kills the run
    max_file_mb: int = 16  # RLIMIT_FSIZE: caps what one write can put on disk
    max_open_files: int = 64


@dataclass(slots=True)
class SandboxResult:
    status: Status
    stdout: str
    stderr_tail: str
    returncode: int | None
    wall_s: float
    isolation: Isolation

    @property
    def ok(self) -> bool:
        return self.status == "ok"



@dataclass(frozen=True, slots=True)
class Mode:
    isolation: Isolation
    python: str  # the interpreter the code runs under
    drop_uid: bool  # root launches: a fresh uid per run
    unshare: bool  # fallback: the bootstrap makes user+net namespaces
    bwrap: str | None

    @property
    def network(self) -> str:
        return "namespace" if self.isolation == "bubblewrap" or self.unshare else "audit-hook"


def is_root() -> bool:
    return os.geteuid() == 0


def fresh_uid() -> int:
    return _UID_BASE + random.SystemRandom().randrange(_UID_SPAN)


def minimal_env(workdir: str) -> dict[str, str]:
    # Built from scratch: nothing of the caller's environment (tokens, proxies, keys) gets in.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONIOENCODING": "utf-8",
    }


def bwrap_argv(bwrap: str, workdir: str) -> list[str]:
    argv = [
        bwrap, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--die-with-parent", "--new-session",
        "--ro-bind", "/", "/", "--proc", "/proc",
        # A minimal /dev and an empty /tmp, both read-only: writes go to the workdir (disk,
        # FSIZE-capped), never to a tmpfs (/dev/shm too) that would eat the shared machine's RAM
        # outside RLIMIT_AS. Device nodes such as /dev/null stay writable.
        "--dev", "/dev", "--remount-ro", "/dev",
        "--tmpfs", "/tmp", "--bind", workdir, workdir, "--remount-ro", "/tmp",
    ]
    if not is_root():  # running as the caller: hide credentials kept under their home
        home = os.path.expanduser("~")
        for rel in _SECRET_HOME_PATHS:
            p = os.path.join(home, rel)
            if os.path.isdir(p):
                argv += ["--tmpfs", p]
            elif os.path.exists(p):
                argv += ["--ro-bind", "/dev/null", p]
    return argv + ["--chdir", workdir, "--"]


def python_candidates(python: str | None) -> list[str]:
    if python:
        return [python]
    out = []
    for p in (os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
              os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3"):
        if p not in out and os.path.exists(p):
            out.append(p)
    return out
