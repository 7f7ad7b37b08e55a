"""One sandboxed run: the bootstrap that sets the limits inside the sandbox, the process it
starts, the incremental capture of its output, its verdict, and the cleanup of whatever it left.
"""

from __future__ import annotations

import collections
import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time

from factory.sandbox.limits import Mode, SandboxError, SandboxLimits, SandboxResult, Status, STARTUP_GRACE_S, STDERR_TAIL, bwrap_argv, fresh_uid, minimal_env


# The bootstrap runs inside the sandbox, single-threaded, before any untrusted code. It is the only
# place limits are set (see the module docstring for why not preexec_fn).
_BOOTSTRAP = r"""
import json, os, resource, sys
cfg = json.loads(sys.argv[1])
if cfg["fallback"]:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if cfg["unshare"]:
        # Network block: a new user namespace (no privilege needed) holding a new network
        # namespace, whose only interface is a loopback that is down.
        if libc.unshare(0x10000000 | 0x40000000 | 0x08000000) != 0:  # NEWUSER|NEWNET|NEWIPC
            sys.exit(0)  # setup failed: exits without saying "ready"
    # bwrap's --die-with-parent, by hand: if the launcher dies (a verification worker killed
    # for its own timeout), this process dies with it instead of running on.
    libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    if os.getppid() != cfg["launcher"]:
        sys.exit(0)
nproc = cfg["nproc"]
if cfg["count_tasks"]:
    # Same uid, same namespace: RLIMIT_NPROC counts every task of this user on the machine.
    uid, n = os.getuid(), 0
    for pid in os.listdir("/proc"):
        try:
            st = open(f"/proc/{pid}/status").read()
        except OSError:
            continue
        fields = dict(l.split(":", 1) for l in st.splitlines() if ":" in l)
        if fields.get("Uid", "").split()[:1] == [str(uid)]:
            n += int(fields.get("Threads", "1"))
    nproc += n
def lim(res, soft, hard=None):
    resource.setrlimit(res, (soft, soft if hard is None else hard))
lim(resource.RLIMIT_NPROC, nproc)
lim(resource.RLIMIT_CPU, cfg["cpu"], cfg["cpu"] + 1)  # SIGXCPU first, SIGKILL a second later
lim(resource.RLIMIT_FSIZE, cfg["fsize"])
lim(resource.RLIMIT_NOFILE, cfg["nofile"])
lim(resource.RLIMIT_CORE, 0)
lim(resource.RLIMIT_AS, cfg["mem"])
def _no_network(event, args):
    # Defense in depth (and the only block in the weakest fallback); code can bypass it via
    # ctypes, which is why the namespaces above are the real containment.
    if event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg"):
        raise PermissionError("network access is disabled in the sandbox")
sys.addaudithook(_no_network)
path = cfg["code"]
with open(path, encoding="utf-8") as f:
    src = f.read()
os.write(cfg["ready_fd"], b"R")
os.close(cfg["ready_fd"])
del cfg, f, lim, nproc, json, resource
sys.argv = [path]
exec(compile(src, path, "exec"), {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__})
"""



def run_in_mode(mode: Mode, code: str, stdin: str, limits: SandboxLimits) -> SandboxResult:
    uid = fresh_uid() if mode.drop_uid else None
    workdir = tempfile.mkdtemp(prefix="factory-sbx-")
    proc: subprocess.Popen[bytes] | None = None
    r_ready, w_ready = os.pipe()
    try:
        code_path = os.path.join(workdir, "solution.py")
        with open(code_path, "w", encoding="utf-8") as f:
            f.write(code)
        if uid is not None:
            os.chown(code_path, uid, uid)
            os.chown(workdir, uid, uid)
        os.chmod(workdir, 0o700)
        cpu = int(limits.cpu_s if limits.cpu_s is not None else limits.timeout_s + 1.999)
        cfg = {
            "fallback": mode.isolation == "rlimits",
            "unshare": mode.unshare,
            "launcher": os.getpid(),
            "count_tasks": not mode.drop_uid and not mode.unshare and mode.isolation == "rlimits",
            "nproc": limits.max_processes,
            "cpu": max(1, cpu),
            "fsize": limits.max_file_mb << 20,
            "nofile": limits.max_open_files,
            "mem": limits.memory_mb << 20,
            "code": code_path,
            "ready_fd": w_ready,
        }
        argv = [mode.python, "-I", "-B", "-c", _BOOTSTRAP, json.dumps(cfg)]
        if mode.isolation == "bubblewrap":
            argv = bwrap_argv(mode.bwrap or "bwrap", workdir) + argv
        # stdin from an unlinked temp file outside the workdir: no writer thread, no deadlock.
        with tempfile.TemporaryFile() as fin:
            fin.write(stdin.encode("utf-8", "surrogateescape"))
            fin.seek(0)
            start = time.monotonic()
            proc = subprocess.Popen(
                argv, stdin=fin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=minimal_env(workdir), cwd=workdir, start_new_session=True, close_fds=True,
                pass_fds=(w_ready,), user=uid, group=uid, extra_groups=[] if uid is not None else None,
            )
        os.close(w_ready)
        w_ready = -1
        status, out, err, ready, code_start = _collect(proc, r_ready, start, limits)
        wall = time.monotonic() - code_start
        if not ready:
            raise SandboxError(f"sandbox did not start (isolation={mode.isolation}): "
                               f"{err.decode(errors='replace')[-500:]}")
        rc = proc.returncode
        if status is None:
            status = _classify(rc, err)
        return SandboxResult(status, out.decode("utf-8", "replace"),
                             err[-STDERR_TAIL:].decode("utf-8", "replace"), rc, wall, mode.isolation)
    finally:
        for fd in (r_ready, w_ready):
            if fd >= 0:
                os.close(fd)
        if proc is not None:
            _kill_group(proc)
        if uid is not None:
            _kill_uid(uid)
            _remove_strays(uid)
        shutil.rmtree(workdir, ignore_errors=True)


def _collect(proc: subprocess.Popen[bytes], r_ready: int, start: float,
             limits: SandboxLimits) -> tuple[Status | None, bytes, bytes, bool, float]:
    """Read stdout/stderr incrementally until the process ends, the deadline or the output cap."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), collections.deque(maxlen=64)  # stderr: last 64 chunks suffice
    ready = False
    # The clock for the code starts when the bootstrap says "ready": on a loaded machine, setting
    # up namespaces can take seconds, and that must not turn a correct program into a timeout.
    deadline = start + max(STARTUP_GRACE_S, limits.timeout_s)
    code_start = start
    sel = selectors.DefaultSelector()
    fds = {proc.stdout.fileno(): "out", proc.stderr.fileno(): "err", r_ready: "ready"}
    for fd in fds:
        sel.register(fd, selectors.EVENT_READ)
    status: Status | None = None
    exited_at: float | None = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                if not ready:
                    break  # never started: reported as a SandboxError by the caller
                status = "timeout"
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            # Once the main process is gone, drain briefly: a stray child holding the pipe open
            # must not turn a finished run into a timeout.
            if exited_at is not None and now - exited_at > 0.25:
                break
            for key, _ in sel.select(min(deadline - now, 0.05)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                kind = fds[key.fd]
                if kind == "out":
                    out += chunk
                    if len(out) > limits.max_output_bytes:
                        status = "output_limit"
                        break
                elif kind == "err":
                    err.append(chunk)
                elif not ready:
                    ready = True
                    code_start = time.monotonic()
                    deadline = code_start + limits.timeout_s
            if status is not None:
                break
    finally:
        sel.close()
    if status is not None:
        _kill_group(proc)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.wait()
    if not ready:
        _kill_group(proc)
    return status, bytes(out[: limits.max_output_bytes]), b"".join(err), ready, code_start


def _classify(rc: int | None, err: bytes) -> Status:
    if rc == 0:
        return "ok"
    tail = err[-2000:]
    # bwrap reports a child killed by signal N as exit status 128+N.
    sig = -rc if rc is not None and rc < 0 else (rc - 128 if rc is not None and rc > 128 else None)
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and b"CPU time limit" in tail):
        return "timeout"
    if b"MemoryError" in tail or b"Cannot allocate memory" in tail:
        return "memory"
    if sig == signal.SIGKILL:
        return "killed"
    return "runtime_error"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _uid_pids(uid: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid != uid:
                    continue
                with open(f"/proc/{name}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state not in ("Z", "X"):  # zombies are dead already; init reaps them
                pids.append(int(name))
    return pids


def _kill_uid(uid: int) -> None:
    """Root launches: SIGKILL whatever still runs as this run's uid (setsid escapes included).

    Every process with this fresh uid was started by this run, so this never hits anything else.
    """
    for _ in range(20):
        pids = _uid_pids(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)


def _remove_strays(uid: int) -> None:
    """Root fallback: world-writable dirs are writable by the run's uid; remove what it left."""
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            entries = os.scandir(d)
        except OSError:
            continue
        with entries:
            for e in entries:
                try:
                    if e.stat(follow_symlinks=False).st_uid != uid:
                        continue
                    if e.is_dir(follow_symlinks=False):
                        shutil.rmtree(e.path, ignore_errors=True)
                    else:
                        os.unlink(e.path)
                except OSError:
                    pass

