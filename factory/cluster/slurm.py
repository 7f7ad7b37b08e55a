"""`factory submit --slurm`: render deploy/slurm/factory.sbatch for one config and hand it to `sbatch`.

What it does is what a user would do by hand, written down once:

    DIR/NAME.sbatch     the rendered script (config path, arguments and #SBATCH defaults filled in);
                        a schedule's every firing resubmits this file, so editing it (or the config)
                        changes the next firings
    DIR/NAME-JOBID.out  each job's log (stdout and stderr)
    sbatch --parsable [--begin=FIRST] [SBATCH_ARGS...] DIR/NAME.sbatch

with FACTORY_SCHEDULE, FACTORY_SCRIPT and FACTORY_SBATCH_ARGS in the job's environment when a
schedule is given (the script resubmits itself; see the script's header). Slurm passes the
submitting environment on (HF_TOKEN included, by the environment, never by a file).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from factory.cluster.schedule import begin_time, check_schedule
from factory.cluster.templates import DeployParams, render_slurm
from factory.errors import UserError


@dataclass
class SlurmSubmission:
    job_id: str
    script: Path
    log: str  # the log path pattern of this job, %j filled in
    begin: str | None  # when the first firing starts (a schedule), else None: as soon as Slurm can
    command: list[str]


def _sbatch() -> str:
    path = shutil.which("sbatch")
    if not path:
        raise UserError("sbatch not found: run `factory submit --slurm` on a Slurm login node (or render the "
                        "script with --render slurm and copy it there)")
    return path


def submit_slurm(config_path: str, params: DeployParams, *, out_dir: Path, dataset: str,
                 nodes: int | None = None, schedule: str | None = None,
                 sbatch_args: list[str] | None = None, environ: dict[str, str] | None = None) -> SlurmSubmission:
    """Render the script into out_dir and submit it; a schedule's first firing waits for its time."""
    if schedule:
        check_schedule(schedule)
    sbatch_args = list(sbatch_args or [])
    if schedule and any(not a or any(c.isspace() for c in a) for a in sbatch_args):
        # The script reads FACTORY_SBATCH_ARGS split at blanks.
        raise UserError(f"--sbatch-arg values of a schedule cannot hold blanks: {sbatch_args}")
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    script = out_dir / f"{dataset}.sbatch"
    log_pattern = str(out_dir / f"{dataset}-%j.out")
    text = render_slurm(params, str(Path(config_path).resolve()), nodes=nodes, output=log_pattern)
    tmp = script.with_suffix(".sbatch.tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, script)  # a firing that reads the script right now sees the old or the new, never half

    env = dict(os.environ if environ is None else environ)
    begin = None
    cmd = [_sbatch(), "--parsable"]
    if schedule:
        begin = begin_time(schedule)
        cmd.append(f"--begin={begin}")
        env.update(FACTORY_SCHEDULE=schedule, FACTORY_SCRIPT=str(script),
                   FACTORY_SBATCH_ARGS=" ".join(sbatch_args))
    cmd += sbatch_args + [str(script)]
    # From here: the job's working directory, against which the config's relative paths resolve.
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"sbatch refused the job (exit {proc.returncode}): {proc.stderr.strip()[:2000]}")
    job_id = proc.stdout.strip().split(";")[0]
    return SlurmSubmission(job_id, script, log_pattern.replace("%j", job_id), begin, cmd)
