"""Takes a replica's engine processes down with the replica, however the replica dies.

vLLM's engine core and its workers are children of the replica's Ray actor and never check
whether that actor is still alive. Ray kills a dead worker's process group from its raylet, but
when the raylet goes too (a SIGKILLed driver followed by `ray stop --force`, a lost node's
cleanup) they are orphaned: an engine of several GB (on a GPU: its memory) that lives on and
makes the resumed run fail or crawl. The guard is a small child process blocked on a pipe whose
only write end the actor holds: when the actor exits in any way, the pipe reads EOF and the guard
SIGKILLs the actor's process group, engine processes included.
"""

from __future__ import annotations

import os
import subprocess
import sys

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
