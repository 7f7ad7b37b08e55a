"""factory submit CONFIG [--set a.b=v]... [--address http://HEAD:8265] [--incremental] [--wait]
factory submit CONFIG --slurm [--schedule "0 3 * * 1"] [--nodes N] [--sbatch-arg ARG]...

Runs `factory generate` on a Ray cluster as a Ray job, or (--slurm) as a Slurm batch job, once or
on a schedule (factory/cluster/slurm.py). What travels with the job is a small temp
folder holding the resolved config (run.yaml) and any relative input files it names, never the
checkout, its .venv or the store. Secrets travel by name only: the job reads HF_TOKEN from the
cluster's own environment, so no token value is ever stored by the job server or shown in its logs.

`--render slurm|configmap|rayjob|cronjob` prints a cluster template instead (factory/cluster/templates.py).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.cluster.slurm import submit_slurm
from factory.cluster.templates import DeployParams, render
from factory.config import load_config
from factory.errors import UserError
from factory.runner.backends.cluster import ray_job_env

ADDRESS_VARS = ("RAY_JOB_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
# Names the job gets from the cluster's environment by default (expanded there by Ray: "${NAME}").
PASS_BY_NAME = ("HF_TOKEN",)
# connect() sets these in its own runtime_env; Ray refuses to merge a job whose runtime_env sets the same names.
RESERVED = frozenset(ray_job_env())
_SECRETISH = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|(^|_)KEY($|_)|API_KEY", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_SHIPPED_BYTES = 100 * 2**20  # Ray keeps the package in its GCS; big inputs belong on shared storage
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
DEFAULT_SCHEDULE = "0 3 * * 1"  # the CronJob's: Mondays 03:00


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit", help="run `factory generate` as a job on a Ray cluster (or print Slurm/KubeRay templates)",
        description="Submit `factory generate CONFIG` to a Ray cluster's job server. The resolved config "
                    "travels with the job; the dataset store must be an absolute path on storage the "
                    "head node shares (NFS, Lustre, a PVC).")
    p.add_argument("config", help="YAML run config, e.g. configs/math_r1.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value before it is shipped (repeatable)")
    p.add_argument("--address", help="the job server (the Ray dashboard), e.g. http://HEAD:8265; default: "
                                     "$RAY_JOB_ADDRESS, $RAY_API_SERVER_ADDRESS or $RAY_ADDRESS")
    p.add_argument("--incremental", action="store_true",
                   help="generate only prompts not yet in the newest version (passed to generate)")
    p.add_argument("--wait", action="store_true", help="follow the job's logs; exit with the job's exit status")
    p.add_argument("--env", action="append", default=[], metavar="NAME[=VALUE]",
                   help="an environment variable for the job: NAME alone is read from the cluster's "
                        "environment; NAME=VALUE sets it (refused for secret-looking names). HF_TOKEN "
                        "is always passed by name")
    p.add_argument("--job-id", help="the submission id (default: Ray picks one)")
    s = p.add_argument_group("Slurm (submit with sbatch instead of to a Ray job server)")
    s.add_argument("--slurm", action="store_true",
                   help="render deploy/slurm/factory.sbatch for this config into --slurm-dir and submit it "
                        "with sbatch; with --schedule, every firing submits the next")
    s.add_argument("--slurm-dir", default="factory-slurm", type=Path,
                   help="where the rendered script (NAME.sbatch) and the job logs (NAME-JOBID.out) go; "
                        "NAME is output.name (default: ./factory-slurm)")
    s.add_argument("--nodes", type=int, help="Slurm nodes (default: --gpu-workers + 1)")
    s.add_argument("--sbatch-arg", dest="sbatch_args", action="append", default=[], metavar="ARG",
                   help="one more sbatch argument, e.g. --sbatch-arg=--partition=gpu (repeatable; a "
                        "schedule's later firings get them too)")
    t = p.add_argument_group("templates (print instead of submitting)")
    t.add_argument("--render", choices=("slurm", "configmap", "rayjob", "cronjob"),
                   help="print a Slurm batch script, the config as a ConfigMap, a KubeRay RayJob, or a "
                        "weekly CronJob that creates RayJobs")
    t.add_argument("--image", help="container image with factory, Ray and vLLM (rayjob, cronjob)")
    t.add_argument("--name", default="factory", help="object name prefix / Slurm job name (default: factory)")
    t.add_argument("--namespace", default="default")
    t.add_argument("--schedule", help="cron schedule ('0 3 * * 1': Mondays 03:00) for --render cronjob "
                                      "(the default) and --slurm; --slurm also takes a period, 'every 6h'")
    t.add_argument("--gpu-workers", type=int, default=1, help="GPU worker pods, or Slurm nodes besides the head")
    t.add_argument("--gpus-per-worker", type=int, default=8, help="GPUs per worker pod / Slurm node (0: none)")
    t.add_argument("--pvc", default="factory-store", help="PersistentVolumeClaim of the store")
    t.add_argument("--secret", default="hf-token", help="Secret holding the Hub token (key: token)")
    p.set_defaults(func=run)


@dataclass
class Submission:
    entrypoint: str
    runtime_env: dict[str, Any]
    config: dict[str, Any]  # what run.yaml holds
    shipped: dict[str, str]  # input file given -> its path inside the job's working dir


# ---------------------------------------------------------------------------------------------
# Building the job


def resolve_address(cli: str | None, environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    address = cli or next((environ[v] for v in ADDRESS_VARS if environ.get(v)), None)
    if not address:
        raise UserError("no Ray job server given: pass --address http://HEAD:8265 (the Ray dashboard) "
                        f"or set one of {', '.join('$' + v for v in ADDRESS_VARS)}")
    return address if "://" in address else f"http://{address}"


def job_env(env_args: list[str]) -> dict[str, str]:
    """The job's env_vars: names by reference ("${NAME}", expanded on the cluster), literals if harmless."""
    env = {name: f"${{{name}}}" for name in PASS_BY_NAME}
    env["PYTHONUNBUFFERED"] = "1"  # logs arrive as they are written
    for item in env_args:
        name, sep, value = item.partition("=")
        if not _ENV_NAME.match(name):
            raise UserError(f"--env {item!r}: {name!r} is not an environment variable name")
        if name in RESERVED:
            raise UserError(f"--env {name}: factory's driver sets {name} itself; Ray refuses a job that sets it too")
        if sep and _SECRETISH.search(name):
            raise UserError(f"--env {name}=...: secret values never go into a job (the job server stores "
                            f"and shows its runtime_env); pass --env {name} alone and set {name} in the "
                            "cluster's environment (a Kubernetes Secret, or the nodes' env)")
        env[name] = value if sep else f"${{{name}}}"
    return env


def entrypoint(incremental: bool) -> str:
    cmd = "factory generate run.yaml --no-progress"
    return f"{cmd} --incremental" if incremental else cmd


def _ship(value: str, key: str, workdir: Path, cwd: Path, shipped: dict[str, str]) -> str:
    """A relative input path is read from here and shipped; an absolute one must exist on the cluster."""
    if Path(value).is_absolute() or value.startswith("~"):
        return value
    src = (cwd / value).resolve()
    if not src.is_file():
        raise UserError(f"{key} {value!r}: {src} not found; relative input files are shipped with the job "
                        "from here, absolute paths are read on the cluster")
    target = f"inputs/{len(shipped)}-{src.name}"
    (workdir / "inputs").mkdir(exist_ok=True)
    shutil.copyfile(src, workdir / target)
    shipped[value] = target
    return target


def prepare(config_path: str, overrides: list[str], incremental: bool, env_args: list[str],
            workdir: Path, cwd: Path | None = None) -> Submission:
    """Validate the config, write the job's working dir (run.yaml + inputs), build the runtime_env."""
    import yaml

    cwd = cwd or Path.cwd()
    cfg = load_config(config_path, overrides)
    store = cfg.output.store
    if not Path(store).is_absolute():
        raise UserError(f"output.store is {store!r}, a relative path: the job runs in a temporary folder on "
                        "the cluster, where the dataset would be lost. Use an absolute path on storage the "
                        "head node shares (NFS, Lustre), e.g. --set output.store=/shared/factory-store")
    data = cfg.model_dump(mode="json")
    # The job gets the cluster's address from Ray; an address from the submitting machine would be wrong there.
    data["run"]["ray_address"] = None
    shipped: dict[str, str] = {}
    if data["source"].get("path"):
        data["source"]["path"] = _ship(data["source"]["path"], "source.path", workdir, cwd, shipped)
    decon = (data.get("prefilter") or {}).get("decontaminate") or {}
    for name, path in list((decon.get("files") or {}).items()):
        decon["files"][name] = _ship(path, f"prefilter.decontaminate.files.{name}", workdir, cwd, shipped)
    size = sum(p.stat().st_size for p in workdir.rglob("*") if p.is_file())
    if size > MAX_SHIPPED_BYTES:
        raise UserError(f"the input files to ship add up to {size / 2**20:.0f} MiB (limit "
                        f"{MAX_SHIPPED_BYTES // 2**20} MiB): put them on the cluster's shared storage and "
                        "give absolute paths, or use a Hub dataset (source.dataset)")
    load_config(None, data=data, origin="the shipped config")  # what the job will read must be valid
    (workdir / "run.yaml").write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    runtime_env = {"working_dir": str(workdir), "env_vars": job_env(env_args)}
    return Submission(entrypoint(incremental), runtime_env, data, shipped)


# ---------------------------------------------------------------------------------------------
# Talking to the job server


def _client(address: str) -> Any:
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as e:  # requests' ConnectionError, Ray's version check: all mean "not a job server"
        raise UserError(f"cannot reach the Ray job server at {address} ({type(e).__name__}: {str(e)[:200]}). "
                        "Give the dashboard's address (http://HEAD:8265); the GCS port (6379) takes no jobs") from None


def follow(client: Any, job_id: str, out: Any = None) -> int:
    """Stream the job's logs until it ends; return its exit status (the driver's, where Ray knows it)."""
    import asyncio

    out = out or sys.stdout

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    asyncio.run(tail())
    while (status := str(client.get_job_status(job_id))) not in TERMINAL:  # logs can end a moment early
        time.sleep(0.5)
    info = client.get_job_info(job_id)
    code = getattr(info, "driver_exit_code", None)
    if status == "SUCCEEDED":
        return 0
    print(f"job {job_id} {status.lower()}: {info.message or ''}".rstrip(), file=sys.stderr)
    return code if isinstance(code, int) and code > 0 else 1


def run(args: argparse.Namespace) -> int:
    if args.schedule and not (args.slurm or args.render == "cronjob"):
        raise UserError("--schedule needs --slurm (a Slurm job that resubmits itself) or --render cronjob; "
                        "a Ray job server has no scheduler: run `factory submit ... --incremental --wait` from "
                        "cron (docs/cluster.md, Scheduled runs)")
    if args.render:
        return _render(args)
    if args.slurm:
        return _submit_slurm(args)
    address = resolve_address(args.address)
    with tempfile.TemporaryDirectory(prefix="factory-job-") as tmp:
        sub = prepare(args.config, args.overrides, args.incremental, args.env, Path(tmp))
        client = _client(address)
        cfg = sub.config
        # submit_job uploads the working dir before it returns, so the temp dir may go afterwards.
        job_id = client.submit_job(
            entrypoint=sub.entrypoint, runtime_env=sub.runtime_env, submission_id=args.job_id,
            metadata={"factory_config": Path(args.config).name,
                      "factory_dataset": f"{cfg['output']['store']}/{cfg['output']['name']}"},
        )
    print(f"submitted job {job_id} to {address}: {sub.entrypoint}")
    print(f"  dataset: {cfg['output']['store']}/{cfg['output']['name']}")
    print(f"  follow:  ray job logs -f {job_id} --address {address}")
    print(f"  status:  ray job status {job_id} --address {address}   stop: ray job stop {job_id} --address {address}")
    if not args.wait:
        return 0
    try:
        return follow(client, job_id)
    except KeyboardInterrupt:
        print(f"\nstopped following; job {job_id} keeps running (stop it: ray job stop {job_id} "
              f"--address {address})", file=sys.stderr)
        return 130


def _render(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    params = DeployParams(
        image=args.image, name=args.name, namespace=args.namespace, schedule=args.schedule or DEFAULT_SCHEDULE,
        gpu_workers=args.gpu_workers, gpus_per_worker=args.gpus_per_worker, pvc=args.pvc, secret=args.secret,
        # A scheduled or Kubernetes run always adds to the newest version; Slurm does as told.
        incremental=args.incremental or args.render in ("rayjob", "cronjob"),
        # Slurm reads the config file itself, so the --set overrides travel as arguments.
        generate_args=[a for o in args.overrides for a in ("--set", o)] if args.render == "slurm" else [],
    )
    data = cfg.model_dump(mode="json")
    data["run"]["ray_address"] = None
    sys.stdout.write(render(args.render, params, args.config, data))
    return 0


def _submit_slurm(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)  # a broken config is refused here, before sbatch
    params = DeployParams(
        name=args.name, gpu_workers=args.gpu_workers, gpus_per_worker=args.gpus_per_worker,
        # A scheduled run adds to the newest version; a one-off run does as told.
        incremental=args.incremental or bool(args.schedule),
        generate_args=[a for o in args.overrides for a in ("--set", o)],
    )
    sub = submit_slurm(args.config, params, out_dir=args.slurm_dir, dataset=cfg.output.name, nodes=args.nodes,
                       schedule=args.schedule, sbatch_args=args.sbatch_args)
    when = f", first firing at {sub.begin} (schedule: {args.schedule})" if sub.begin else ""
    print(f"submitted Slurm job {sub.job_id}{when}: {sub.script}")
    print(f"  dataset: {cfg.output.store}/{cfg.output.name}")
    print(f"  log:     {sub.log}")
    print(f"  status:  squeue -j {sub.job_id}   stop: scancel {sub.job_id}"
          + ("  (the pending firing: cancelling it ends the schedule)" if sub.begin else ""))
    return 0
