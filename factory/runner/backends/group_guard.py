"""Takes a replica's engine processes down with the replica, however the replica dies.

vLLM's engine core and its workers are children of the replica's Ray actor and never check
whether that actor is still alive. Ray kills a dead worker's process group from its raylet, but
when the raylet goes too (a SIGKILLed driver followed by `ray stop --force`, a lost node's
cleanup) they are orphaned: an engine of several GB (on a GPU: its memory) that lives on and
makes the resumed run fail or crawl. The guard is a small child process blocked on a pipe whose
only write end the actor holds: when the actor exits in any way, the pipe reads EOF and the guard
SIGKILLs the actor's process group, engine processes included.

A replica in the driver's own process (the local backend) shares the driver's group with whatever
started it (a shell, make), so it gets the other guard here: told the pids of the engine's
processes once they are up, it SIGKILLs exactly those when the driver exits without stopping them
(a `kill -9` of the driver alone, an OOM kill).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Blocks until the actor's write end closes (its exit), then ends the whole process group.
_GUARD = "import os,signal,sys;os.read(int(sys.argv[1]),1);os.killpg(int(sys.argv[2]),signal.SIGKILL)"


class GroupGuard:
    def __init__(self, proc: subprocess.Popen, write_fd: int):
        self._proc, self._write_fd = proc, write_fd

    def disarm(self) -> None:
        """A clean shutdown: the engine is already stopped, so the guard goes without firing."""
        self._proc.kill()
        self._proc.wait()
        os.close(self._write_fd)


def arm_group_guard() -> GroupGuard | None:
    """Start the guard for this process's group; None where this process does not lead its group.

    Ray (2.60) starts each worker in a process group of its own. Where it does not, the group is
    shared with other processes (the raylet's, a shell's), so nothing is armed rather than kill those.
    """
    pgid = os.getpgid(0)
    if pgid != os.getpid():
        return None
    read_fd, write_fd = os.pipe()  # not inheritable: the engine's own children never hold the write end
    proc = subprocess.Popen([sys.executable, "-c", _GUARD, str(read_fd), str(pgid)], pass_fds=(read_fd,),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, close_fds=True)
    os.close(read_fd)
    return GroupGuard(proc, write_fd)


# Reads "pid start-time" lines until the driver's write end closes (its exit), then SIGKILLs each
# listed process that is still the same process: a pid of a process gone early may be reused.
_PROCESS_GUARD = r"""
import os, signal, sys
fd, data = int(sys.argv[1]), b""
while chunk := os.read(fd, 65536):
    data += chunk
for line in data.decode().splitlines():
    pid, start = line.split()
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[19] == start:
                os.kill(int(pid), signal.SIGKILL)
    except (OSError, IndexError, ValueError):
        pass
"""


class ProcessGuard:
    def __init__(self, proc: subprocess.Popen, write_fd: int):
        self._proc, self._write_fd = proc, write_fd
        self.pid = proc.pid

    def watch(self, pids: list[int]) -> None:
        """Kill these (if still the same processes) when this process exits without disarming."""
        lines = "".join(f"{pid} {start}\n" for pid in pids if (start := _start_time(pid)) is not None)
        if lines:
            os.write(self._write_fd, lines.encode())

    def disarm(self) -> None:
        self._proc.kill()
        self._proc.wait()
        os.close(self._write_fd)


def arm_process_guard() -> ProcessGuard | None:
    """Start the guard; None where there is no /proc to name processes by (not Linux)."""
    if not Path("/proc/self/stat").exists():
        return None
    read_fd, write_fd = os.pipe()  # not inheritable: no child of this process holds the write end
    proc = subprocess.Popen([sys.executable, "-c", _PROCESS_GUARD, str(read_fd)], pass_fds=(read_fd,),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, close_fds=True)
    os.close(read_fd)
    return ProcessGuard(proc, write_fd)


def descendants(pid: int | None = None) -> list[int]:
    """Every live process below `pid` (default: this process), children first."""
    root = os.getpid() if pid is None else pid
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(children.get(root, []))
    while todo:
        p = todo.pop(0)
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
