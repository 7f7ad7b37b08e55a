"""A real one-node Slurm cluster on this machine, for tests: munged, slurmctld and slurmd.

Debian's packages (`slurm-wlm`, `munge`; .ci/run installs them) are installed here when missing
and this process may (root); otherwise `slurm_or_skip()` names what is missing. Everything the
cluster needs lives in one temp folder: its own munge key and socket, a generated slurm.conf with
this machine's real CPUs and memory (from `slurmd -C`), free ports, state, spool and logs. Client
commands find it through SLURM_CONF, so nothing under /etc is touched and a system Slurm (if any)
is left alone. No systemd and no cgroups here: the daemons run in the foreground as children of
the test, with plugins that need neither (proctrack/linuxproc, task/none).

There is no slurmdbd (it needs a MySQL server), so `sacct` has nothing to read: finished jobs are
seen through `scontrol show job` (kept MinJobAge seconds) and the job-completion log that
jobcomp/filetxt appends to (`SlurmCluster.completions()`), one line per finished job.

Only what this fixture started is stopped: its jobs (scancel against this cluster), every process
whose environment names this cluster's slurm.conf (a job's leftovers), then the three daemons.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel")
PACKAGES = ("slurm-wlm", "munge")


def _missing() -> list[str]:
    found = {name: shutil.which(name) or (Path("/usr/sbin") / name).exists() for name in DAEMONS + CLIENTS}
    return [name for name, ok in found.items() if not ok]


def ensure_installed() -> str | None:
    """Install the packages where missing and allowed; the reason Slurm cannot run here, or None."""
    if not _missing():
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return f"Slurm not installed ({', '.join(_missing())} missing) and apt-get is not available as root"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
    proc = subprocess.run(["apt-get", "install", "-y", "-q", *PACKAGES], env=env, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0 or _missing():
        return f"could not install {' '.join(PACKAGES)}: {proc.stderr.strip()[-300:] or 'still missing ' + str(_missing())}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _daemon(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin") / name)


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """The environment for client commands (and, through sbatch, for the jobs)."""
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def run(self, *cmd: str, env: dict[str, str] | None = None, check: bool = True,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(cmd), env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=120, cwd=cwd)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stdout}{proc.stderr}")
        return proc

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job -o` as a dict (JobState, ExitCode, StartTime, Reason, Command, ...)."""
        out = self.run("scontrol", "show", "job", "-o", job_id, check=False).stdout
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def state(self, job_id: str) -> str:
        return self.job(job_id).get("JobState", "UNKNOWN")

    def wait(self, job_id: str, states: set[str], timeout_s: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout_s
        while (info := self.job(job_id)).get("JobState") not in states:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is {info.get('JobState')} after {timeout_s:.0f}s, not {states}: {info}")
            time.sleep(1)
        return info

    def squeue(self) -> list[dict[str, str]]:
        """Queued and running jobs: id, name, state, reason, start time."""
        out = self.run("squeue", "-h", "-o", "%i|%j|%T|%r|%S", check=False).stdout
        keys = ("id", "name", "state", "reason", "start")
        return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]

    def completions(self) -> list[dict[str, str]]:
        """jobcomp/filetxt's log: one dict per finished job."""
        path = self.root / "log" / "jobcomp.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in lines]

    def job_pids(self, settle_s: float = 0.0) -> list[int]:
        """Processes of this cluster's jobs: their environment names this cluster's slurm.conf.

        settle_s: wait up to that long for them to be gone (a job's processes end a moment after
        Slurm marks it done)."""
        deadline = time.monotonic() + settle_s
        while (pids := self._job_pids()) and time.monotonic() < deadline:
            time.sleep(0.5)
        return pids

    def _job_pids(self) -> list[int]:
        marker = f"SLURM_CONF={self.conf}".encode()
        pids = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and int(proc.name) != os.getpid():
                try:
                    if marker in (proc / "environ").read_bytes().split(b"\0"):
                        pids.append(int(proc.name))
                except OSError:
                    continue
        return pids

    def log(self, name: str) -> str:
        path = self.root / "log" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _node_line() -> str:
    """This machine as slurmd sees it: NodeName=HOST CPUs=... RealMemory=... (its real resources)."""
    out = subprocess.run([_daemon("slurmd"), "-C"], capture_output=True, text=True, timeout=60).stdout
    line = next(x for x in out.splitlines() if x.startswith("NodeName="))
    return " ".join(part for part in line.split() if not part.startswith("UpTime"))


def _conf(root: Path, node: str, host: str) -> str:
    return f"""# Generated by tests/support/slurm.py: a one-node test cluster, no cgroups, no slurmdbd.
ClusterName=factorytest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser={pwd.getpwuid(os.geteuid()).pw_name}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/run/munge.sock
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/log/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=5
SchedulerParameters=sched_interval=2
{node} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _wait_for(what: str, check, timeout_s: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}" for p in logs if p.exists())
            raise RuntimeError(f"{what} did not come up within {timeout_s:.0f}s\n{tails}")
        time.sleep(0.5)


@contextmanager
def slurm_cluster(root: Path) -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd under root; stop all of it (and its jobs) after."""
    for sub in ("etc", "run", "state", "spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    # munged insists: the key readable by its owner only, the socket's folder open to all.
    (root / "etc").chmod(0o700)
    (root / "run").chmod(0o755)
    root.chmod(0o755)
    key = root / "etc" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    node = _node_line()
    host = node.split()[0].split("=", 1)[1]
    conf = root / "etc" / "slurm.conf"
    conf.write_text(_conf(root, node, host))
    cluster = SlurmCluster(root, conf)
    # The daemons get the config by -f, not by SLURM_CONF: so SLURM_CONF=<this conf> in a process's
    # environment marks the processes of jobs (sbatch passes the submitter's environment on) only.
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    logs = [root / "log" / f"{n}.out" for n in DAEMONS] + [root / "log" / f"{n}.log" for n in DAEMONS]

    def start(name: str, *args: str) -> None:
        out = (root / "log" / f"{name}.out").open("w")
        cluster.procs[name] = subprocess.Popen([_daemon(name), *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                               start_new_session=True)

    try:
        start("munged", "-F", f"--key-file={key}", f"--socket={root}/run/munge.sock",
              f"--pid-file={root}/run/munged.pid", f"--log-file={root}/log/munged.log",
              f"--seed-file={root}/etc/munged.seed")
        _wait_for("munged", (root / "run" / "munge.sock").exists, 30, logs)
        start("slurmctld", "-D", "-i", "-f", str(conf))
        start("slurmd", "-D", "-f", str(conf))

        def node_idle() -> bool:
            for name, p in cluster.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}: "
                                       f"{(root / 'log' / f'{name}.out').read_text()[-2000:]}")
            out = cluster.run("sinfo", "-h", "-o", "%T", check=False).stdout.split()
            return "idle" in out

        _wait_for("the Slurm node", node_idle, 60, logs)
        yield cluster
    finally:
        _stop(cluster)


def _stop(cluster: SlurmCluster) -> None:
    if "slurmctld" in cluster.procs and cluster.procs["slurmctld"].poll() is None:
        cluster.run("scancel", "--full", "--user", str(os.getuid()), check=False)
        deadline = time.monotonic() + 30
        while (cluster.squeue() if cluster.procs["slurmctld"].poll() is None else []) and time.monotonic() < deadline:
            time.sleep(1)
    for pid in cluster.job_pids():  # a job's processes that outlived it
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for name in reversed(DAEMONS):
        p = cluster.procs.get(name)
        if p is None or p.poll() is not None:
            continue
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
