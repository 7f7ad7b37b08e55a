"""Finding this test session's own Ray and vLLM processes, for tests that kill or count them.

Only descendants of the test process count, never the whole machine: a developer's own run, or a
second test session, on the same machine must not fail (or be killed by) these tests. Ray workers
and vLLM engine cores outlive the processes that started them (that is what the tests check), and
an orphan is normally re-parented to init, out of our tree; `keep_orphans()` makes the test
process their "child subreaper" (Linux prctl), so they are re-parented to it and stay in its tree.
An orphan that dies stays a zombie of the test process until it exits; `alive()` counts a zombie
as dead.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
from pathlib import Path

from factory.runner.backends.group_guard import descendants  # the guard's own walk of /proc

_PR_SET_CHILD_SUBREAPER = 36
# Ray's daemons and workers: a `ray::` title, or a binary / script inside the ray package.
_RAY = re.compile(rb"^ray::|/ray/")


def keep_orphans() -> bool:
    """Make this process the reaper of its descendants' orphans; False where the kernel refuses."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def alive(pid: int) -> bool:
    """Running (a zombie is dead: it only waits to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def pids_named(title: str, root: int | None = None) -> list[int]:
    """Our descendants whose command line starts with `title` (Ray and vLLM name their processes so)."""
    return [p for p in descendants(root) if _cmdline(p).startswith(title.encode())]


def kill_our_ray(root: int | None = None) -> list[int]:
    """SIGKILL the Ray daemons and workers below `root` (default: this process), as `ray stop --force`
    would, but leaving every other Ray on the machine alone. vLLM's processes are not touched: the
    tests check that their guards take them down. Returns the pids signalled."""
    hit = []
    for pid in descendants(root):
        if _RAY.search(_cmdline(pid)):
            try:
                os.kill(pid, signal.SIGKILL)
                hit.append(pid)
            except OSError:
                pass
    return hit
