"""One writer per dataset: an exclusive, non-blocking flock on STORE/NAME/.lock.

The lock lives in the kernel, not in the file: when the holder exits, even by SIGKILL, the kernel
drops it, so a crashed run never leaves a stale lock behind. The file's content (pid, host, start
time) only serves the error message of the run that finds the lock taken.

flock (not lockf/fcntl record locks) on purpose: flock locks belong to the open file, so a second
`dataset_lock` in the same process conflicts too, and closing an unrelated descriptor of the same
file elsewhere in the process does not silently drop the lock (a POSIX record-lock pitfall).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from factory.errors import UserError

LOCK_NAME = ".lock"


class DatasetLocked(UserError, RuntimeError):
    """Another process is writing this dataset."""

    exit_code = 75  # EX_TEMPFAIL: try again later (a scheduled job skips; factory.sbatch)


def _holder(fd: int) -> dict[str, object]:
    """What the current holder wrote; empty when it is mid-write or the file is foreign."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096)
        data = json.loads(raw.decode() or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict[str, object]) -> str:
    if not holder:
        return "another process"
    pid, host, started = holder.get("pid"), holder.get("host"), holder.get("started")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"pid {pid}{where}, started {started}"


@contextmanager
def dataset_lock(dataset_dir: str | Path) -> Iterator[Path]:
    """Hold the dataset's write lock for the block; raise DatasetLocked at once if it is taken.

    Yields the lock file's path. Creates dataset_dir if needed. The lock file itself is never
    deleted (deleting it would let two processes lock two different inodes of the "same" file).
    """
    dataset_dir = Path(dataset_dir)
    dataset_dir.mkdir(parents=True, exist_ok=True)
    path = dataset_dir / LOCK_NAME
    # os.open gives a non-inheritable descriptor, so exec'd children (Ray workers, vLLM) do not
    # keep the lock alive after this process dies.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _describe(_holder(fd))
            raise DatasetLocked(
                f"another run is writing {dataset_dir.name!r} ({who}); wait for it to finish, "
                f"or stop it, then run again (the lock on {path} is freed when that process exits)"
            ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield path
        finally:
            # Clear the holder info before unlocking so the next error message never names us.
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
