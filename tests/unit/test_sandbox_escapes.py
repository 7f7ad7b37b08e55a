"""Escape suite: each attack must be contained AND come back as a failed test.

Every test runs under both isolation modes: bubblewrap (skipped only when `bwrap` is not
installed) and the rlimits fallback. Limits are small on purpose: the machine is shared, so the
fork bomb meets its process limit long before it could matter.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from factory.sandbox import SandboxLimits, run_python, sandbox_details
from factory.types import Completion, Prompt, Trace
from factory.verifiers.code import CodeParams, CodeVerifier

REPO = Path(__file__).resolve().parents[2]
LIMITS = SandboxLimits(timeout_s=2.0, memory_mb=256, max_processes=8, max_output_bytes=64 * 1024)
SHORT = SandboxLimits(timeout_s=1.0, memory_mb=256, max_processes=8, max_output_bytes=64 * 1024)


@pytest.fixture(params=["bubblewrap", "rlimits"])
def mode(request: pytest.FixtureRequest) -> str:
    if request.param == "bubblewrap" and shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (apt-get install -y bubblewrap)")
    return request.param


def _verifier(mode: str, timeout_s: float) -> CodeVerifier:
    return CodeVerifier(CodeParams(isolation=mode, timeout_s=timeout_s, memory_mb=256,
                                   max_processes=8, max_output_bytes=64 * 1024, max_tests=1))


@pytest.fixture
def verifier(mode: str) -> CodeVerifier:
    """For attacks that end by themselves: a generous clock, so a loaded machine cannot flake."""
    return _verifier(mode, 5.0)


@pytest.fixture
def short_verifier(mode: str) -> CodeVerifier:
    """For attacks that run until the clock stops them."""
    return _verifier(mode, 1.0)


def judge(v: CodeVerifier, code: str, expected: str = "ok\n") -> tuple[bool | None, str]:
    ref = json.dumps({"inputs": [""], "outputs": [expected]})
    p = Prompt("p", 0, "attack", ref, [], "test")
    text = f"```python\n{textwrap.dedent(code)}\n```"
    verdict = v.verify(Trace(p, Completion("p", 0, text, "stop"), "", text, False, False))
    return verdict.passed, verdict.reason or ""


def sandbox_procs(marker: str) -> list[int]:
    """Processes still alive whose command line names this run's working directory."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker.encode() in cmd and state != "Z":
            found.append(int(pid))
    return found


def test_fork_bomb_hits_process_limit_and_leaves_nothing(mode: str, short_verifier: CodeVerifier) -> None:
    bomb = """
        import os, sys
        print(os.getcwd(), flush=True)
        told = False
        while True:
            try:
                os.fork()
            except OSError:
                if not told:
                    told = True
                    sys.stderr.write("fork refused\\n")
                    sys.stderr.flush()
    """
    t0 = time.monotonic()
    res = run_python(textwrap.dedent(bomb), "", SHORT, isolation=mode)
    assert res.status == "timeout"
    assert "fork refused" in res.stderr_tail  # the process limit, not just the clock, stopped it
    assert time.monotonic() - t0 < 15
    workdir = res.stdout.split()[0]
    assert workdir.startswith("/") and not sandbox_procs(workdir)
    assert not os.path.exists(workdir)
    assert judge(short_verifier, bomb) == (False, "timeout (0/1 passed)")


def test_wall_clock_limit_kills_a_sleeper(mode: str, short_verifier: CodeVerifier) -> None:
    t0 = time.monotonic()
    res = run_python("import time\ntime.sleep(60)\nprint('ok')", "", SHORT, isolation=mode)
    assert res.status == "timeout" and res.stdout == ""
    assert time.monotonic() - t0 < 10
    verdict = judge(short_verifier, "import time\ntime.sleep(60)\nprint('ok')")
    assert verdict == (False, "timeout (0/1 passed)")


def test_cpu_limit_stops_a_busy_loop_before_the_wall_clock(mode: str, short_verifier: CodeVerifier) -> None:
    limits = SandboxLimits(timeout_s=20, cpu_s=1, memory_mb=256, max_processes=8)
    res = run_python("while True:\n    pass", "", limits, isolation=mode)
    assert res.status == "timeout"
    assert res.returncode in (-24, 128 + 24)  # SIGXCPU: RLIMIT_CPU, not the 20 s deadline
    assert res.wall_s < 10
    assert judge(short_verifier, "while True:\n    pass") == (False, "timeout (0/1 passed)")


def test_memory_bomb_is_refused(mode: str, verifier: CodeVerifier) -> None:
    # Grows in touched 16 MiB steps (a real bomb), against a 128 MiB address-space limit.
    bomb = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\nprint('ok')"
    limits = SandboxLimits(timeout_s=20, memory_mb=128, max_processes=8)
    res = run_python(bomb, "", limits, isolation=mode)
    assert res.status == "memory", res.stderr_tail
    assert res.wall_s < 15  # refused by the limit, not stopped by the clock
    huge = "x = bytearray(1 << 36)\nprint('ok')"  # 64 GiB: more than the machine has
    assert judge(verifier, huge) == (False, "memory (0/1 passed)")


@pytest.mark.parametrize("where", ["root_home", "next_to_repo", "tmp", "dev_shm"])
def test_writes_outside_the_workdir_fail_and_leave_nothing(mode: str, verifier: CodeVerifier,
                                                          where: str) -> None:
    name = f"factory_escape_{uuid.uuid4().hex}"
    target = {"root_home": f"/tmp/../root/{name}", "next_to_repo": str(REPO / name),
              "tmp": f"/tmp/{name}", "dev_shm": f"/dev/shm/{name}"}[where]
    if where == "dev_shm" and not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm on this machine")
    world_writable = where in ("tmp", "dev_shm")
    if os.geteuid() != 0 and mode == "rlimits" and not world_writable:
        pytest.skip("the fallback run as a non-root user can write wherever that user can")
    code = f"open({target!r}, 'w').write('escaped')\nprint('ok')"
    try:
        passed, reason = judge(verifier, code)
        assert not os.path.exists(target)
        if world_writable and mode == "rlimits":
            # The fallback cannot make /tmp read-only; it removes what the run's uid left there.
            if os.geteuid() != 0:
                pytest.skip("stray-file cleanup needs the per-run uid (root launches only)")
            assert (passed, reason) == (True, "all_tests_passed (1/1 passed)")
        else:
            assert (passed, reason) == (False, "runtime_error (0/1 passed)")
    finally:
        if os.path.exists(target):
            os.unlink(target)


@pytest.fixture
def listener():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    yield srv
    srv.close()


def assert_no_connection(srv: socket.socket) -> None:
    try:
        conn, _ = srv.accept()
    except BlockingIOError:
        return
    conn.close()
    raise AssertionError("the sandboxed code reached the test's listener")


def test_network_is_unreachable(mode: str, verifier: CodeVerifier, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    # Control: the listener works from outside the sandbox, so a failure below means containment.
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    listener.setblocking(True)
    listener.accept()[0].close()
    listener.setblocking(False)
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('ok')"
    assert judge(verifier, code) == (False, "runtime_error (0/1 passed)")
    assert_no_connection(listener)


def test_network_is_unreachable_even_bypassing_python(mode: str, verifier: CodeVerifier,
                                                      listener: socket.socket) -> None:
    if sandbox_details(mode)["network"] != "namespace":
        pytest.skip("no network namespace here: only the audit hook blocks sockets")
    port = listener.getsockname()[1]
    # Raw libc calls skip Python's audit hooks: only the namespace can stop this one.
    code = f"""
        import ctypes, struct
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.socket(2, 1, 0)
        addr = struct.pack("=H", 2) + struct.pack("!H", {port}) + bytes([127, 0, 0, 1]) + bytes(8)
        if libc.connect(fd, addr, len(addr)) != 0:
            raise OSError(ctypes.get_errno(), "connect refused")
        print("ok")
    """
    assert judge(verifier, code) == (False, "runtime_error (0/1 passed)")
    assert_no_connection(listener)


def test_parent_environment_does_not_leak(mode: str) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    code = """
        import os
        print(sorted(os.environ.items()))
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    print(pid, open(f"/proc/{pid}/environ", "rb").read())
                except OSError:
                    pass
    """
    # The launcher runs in a child that holds the secret in its initial environment block, so
    # both os.environ and /proc/<pid>/environ of the launcher would show it if reachable.
    driver = (
        "import json, sys\n"
        "from factory.sandbox import run_python\n"
        f"r = run_python(sys.stdin.read(), '', isolation={mode!r})\n"
        "print(json.dumps({'status': r.status, 'stdout': r.stdout}))\n"
    )
    env = dict(os.environ, FACTORY_TEST_SECRET=secret, HF_TOKEN=secret, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", driver], input=textwrap.dedent(code), env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    res = json.loads(out.stdout)
    assert res["status"] == "ok" and "PATH" in res["stdout"]  # the dump really ran
    assert secret not in res["stdout"]
    assert "FACTORY_TEST_SECRET" not in res["stdout"] and "HF_TOKEN" not in res["stdout"]


def test_environment_dump_fails_the_test(mode: str, verifier: CodeVerifier,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACTORY_TEST_SECRET", "hunter2")
    res = run_python("import os\nprint(dict(os.environ))", "", LIMITS, isolation=mode)
    assert res.status == "ok" and "PATH" in res.stdout and "hunter2" not in res.stdout
    assert judge(verifier, "import os\nprint(dict(os.environ))") == (False, "wrong_answer (0/1 passed)")


def test_huge_output_is_capped_and_killed(mode: str, verifier: CodeVerifier) -> None:
    flood = "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)"
    res = run_python(flood, "", LIMITS, isolation=mode)
    assert res.status == "output_limit"
    assert len(res.stdout) <= LIMITS.max_output_bytes
    assert res.wall_s < LIMITS.timeout_s  # killed at the cap, not at the deadline
    assert judge(verifier, flood) == (False, "output_limit (0/1 passed)")  # says why


def test_workdir_is_private_and_removed(mode: str) -> None:
    code = """
        import os
        open("left_behind.txt", "w").write("x" * 1000)
        os.mkdir("sub")
        print(os.getcwd(), os.environ["HOME"], sorted(os.listdir(".")))
    """
    res = run_python(textwrap.dedent(code), "", LIMITS, isolation=mode)
    assert res.status == "ok", res.stderr_tail
    cwd, home, listing = res.stdout.split(" ", 2)
    assert cwd == home
    assert listing.strip() == "['left_behind.txt', 'solution.py', 'sub']"  # started empty
    assert not os.path.exists(cwd)


def test_detached_children_are_killed(mode: str) -> None:
    if os.geteuid() != 0 and mode == "rlimits":
        pytest.skip("the fallback as non-root kills only the process group (no per-run uid)")
    code = """
        import os, time
        print(os.getcwd(), flush=True)
        if os.fork() == 0:
            os.setsid()  # leaves the process group the launcher kills
            time.sleep(30)
    """
    res = run_python(textwrap.dedent(code), "", LIMITS, isolation=mode)
    workdir = res.stdout.split()[0]
    time.sleep(0.1)
    assert not sandbox_procs(workdir)


def test_sandbox_dies_with_its_launcher(mode: str) -> None:
    # A verification worker killed from outside (its own timeout) must not leave code running.
    base = Path(f"/tmp/factory-test-{uuid.uuid4().hex}")
    base.mkdir(mode=0o755)
    base.chmod(0o755)  # the sandbox's own uid must reach its workdir inside
    driver = (
        "import sys, tempfile\n"
        f"tempfile.tempdir = {str(base)!r}\n"
        "from factory.sandbox import run_python\n"
        f"run_python('import time\\ntime.sleep(60)', '', isolation={mode!r})\n"
    )
    launcher = subprocess.Popen([sys.executable, "-c", driver], env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        deadline = time.monotonic() + 30
        while not sandbox_procs(str(base)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sandbox_procs(str(base)), "the sandboxed sleeper never started"
        launcher.kill()
        launcher.wait()
        deadline = time.monotonic() + 5
        while sandbox_procs(str(base)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not sandbox_procs(str(base))
    finally:
        launcher.kill()
        launcher.wait()
        shutil.rmtree(base, ignore_errors=True)
