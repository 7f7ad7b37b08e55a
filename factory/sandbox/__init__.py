"""Run untrusted Python (a teacher's solution) against stdin, contained.

Two isolation levels, chosen once per process and reported so a run summary can say which held:

- "bubblewrap": `bwrap` with fresh network, PID, IPC and UTS namespaces, a read-only root, a
  writable bind of the run's empty working directory only, an empty read-only /tmp, and
  --die-with-parent / --new-session. Killing bwrap tears down the PID namespace, so nothing the
  code started outlives the run.
- "rlimits": the weaker fallback when bwrap is missing or cannot create namespaces: resource
  limits, a scrubbed environment, its own process group, and a best-effort network block (a fresh
  user+network namespace when the kernel allows it, else only a Python audit hook).

Both levels share the rest: every run gets an empty temporary working directory (removed after),
an environment built from scratch (never os.environ), CPU-time, address-space, file-size and
process-count limits, a wall-clock deadline (the whole process group is SIGKILLed), and a cap on
captured stdout (read incrementally; the run is killed when it is exceeded).

When this process is root, the code never runs as root: every run gets its own unused uid. That
matters twice over: RLIMIT_NPROC is not enforced for root (a fork bomb would be unbounded), and a
fresh uid can neither read root's files (tokens under /root) nor signal another run's processes.

No preexec_fn anywhere: verifiers call this from threads, and preexec_fn is not safe there. Limits
are set by a small bootstrap that runs inside the sandbox before the untrusted code; it reports
"ready" on a private pipe that it closes before the code runs, so the code cannot fake it.
"""

from __future__ import annotations

import shutil
import threading
from typing import Any

from factory.sandbox.limits import Isolation, Mode, SandboxError, SandboxLimits, SandboxResult, is_root, python_candidates
from factory.sandbox.process import run_in_mode

__all__ = ["Isolation", "SandboxError", "SandboxLimits", "SandboxResult", "run_python", "sandbox_details",
           "sandbox_isolation"]


_modes: dict[tuple[str, str | None], Mode] = {}
_modes_lock = threading.Lock()  # parallel first calls must not all probe


def _resolve_mode(isolation: str, python: str | None) -> Mode:
    """Probe once per process: which isolation works, which interpreter the sandbox can run."""
    if isolation not in ("auto", "bubblewrap", "rlimits"):
        raise ValueError(f"isolation must be auto, bubblewrap or rlimits, not {isolation!r}")
    key = (isolation, python)
    with _modes_lock:
        if key not in _modes:
            _modes[key] = _probe(isolation, python)
        return _modes[key]


def _probe(isolation: str, python: str | None) -> Mode:
    bwrap = shutil.which("bwrap")
    root = is_root()
    tries: list[Mode] = []
    for py in python_candidates(python):
        if isolation in ("auto", "bubblewrap") and bwrap:
            tries.append(Mode("bubblewrap", py, root, False, bwrap))
    for py in python_candidates(python):
        if isolation in ("auto", "rlimits"):
            tries.append(Mode("rlimits", py, root, True, None))
            tries.append(Mode("rlimits", py, root, False, None))
    errors = []
    for mode in tries:
        try:
            res = run_in_mode(mode, "print(6*7)", "", SandboxLimits(timeout_s=10))
        except (SandboxError, OSError) as e:
            errors.append(f"{mode.isolation}/{mode.python}/unshare={mode.unshare}: {e}")
            continue
        if res.status == "ok" and res.stdout.strip() == "42":
            return mode
        errors.append(f"{mode.isolation}/{mode.python}: {res.status} {res.stderr_tail[-300:]!r}")
    if isolation == "bubblewrap" and not bwrap:
        raise SandboxError("bubblewrap is not installed (`bwrap` not on PATH); install it with "
                           "`apt-get install -y bubblewrap`")
    raise SandboxError(f"no working sandbox for isolation={isolation!r}:\n  " + "\n  ".join(errors))


def sandbox_isolation(isolation: str = "auto", python: str | None = None) -> Isolation:
    """"bubblewrap" or "rlimits": what run_python() uses here (probed once per process)."""
    return _resolve_mode(isolation, python).isolation


def sandbox_details(isolation: str = "auto", python: str | None = None) -> dict[str, Any]:
    """For manifests and run summaries: the isolation in force and what backs it."""
    m = _resolve_mode(isolation, python)
    return {
        "isolation": m.isolation,
        "network": m.network,
        "uid": "fresh uid per run" if m.drop_uid else "caller's uid",
        "python": m.python,
        "bwrap": m.bwrap,
    }


def run_python(code: str, stdin: str = "", limits: SandboxLimits | None = None,
               isolation: str = "auto", python: str | None = None) -> SandboxResult:
    """Run `code` as a script reading `stdin`; never raises for anything the code does.

    Raises SandboxError only when the sandbox itself fails to start.
    """
    return run_in_mode(_resolve_mode(isolation, python), code, stdin, limits or SandboxLimits())
