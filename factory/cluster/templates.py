"""Render the cluster templates in deploy/: the Slurm batch script and the KubeRay manifests.

The Kubernetes templates hold `${NAME}` placeholders (upper-case names only, so shell `$var` and
Kubernetes `$(VAR)` pass through untouched) and stay valid YAML before rendering. Every value is
checked before it is put in: a value can never break out of its YAML string or inject a key.
The Slurm script needs no placeholders (it reads environment variables); rendering it only fills
in its #SBATCH defaults and the default config and arguments.

Nothing here talks to a cluster: rendering is plain text in, text out.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from factory.errors import UserError

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"
KINDS = ("slurm", "configmap", "rayjob", "cronjob")

_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")
# Ranges of the five cron fields: minute, hour, day of month, month, day of week (0 and 7: Sunday).
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_NAMES = ({}, {}, {}, {m: i + 1 for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split())},
    {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())})


class TemplateError(UserError, ValueError):
    """A template or a value that cannot be rendered; the message names it."""


@dataclass
class DeployParams:
    """What varies between clusters. Defaults suit one weekly run on one 8-GPU node."""

    image: str | None = None  # an image with factory, Ray and vLLM installed (required for Kubernetes)
    name: str = "factory"  # prefix of every Kubernetes object, and the Slurm job name
    namespace: str = "default"
    config_map: str = "factory-config"  # holds the run config as run.yaml
    secret: str = "hf-token"  # Secret with the Hub token; referenced, never read
    secret_key: str = "token"
    pvc: str = "factory-store"  # PersistentVolumeClaim for the dataset store
    store_mount: str = "/data"  # where the head pod mounts it
    config_mount: str = "/configs"  # where the head pod mounts the config's ConfigMap (run.yaml)
    gpu_workers: int = 1  # Ray worker pods (Kubernetes) / worker nodes (Slurm: nodes - 1)
    gpus_per_worker: int = 8
    worker_cpus: str = "32"
    worker_memory: str = "256Gi"
    head_cpus: str = "8"
    head_memory: str = "32Gi"
    schedule: str = "0 3 * * 1"  # Mondays 03:00
    time_zone: str = "Etc/UTC"
    ray_version: str | None = None  # default: the installed Ray's version
    kubectl_image: str = "bitnami/kubectl:1.31"
    ttl_seconds: int = 3600  # how long a finished RayJob's cluster lingers for inspection
    deadline_seconds: int = 7 * 24 * 3600  # a run that takes longer than the schedule's period is stopped
    slurm_time: str = "24:00:00"
    incremental: bool = True
    generate_args: list[str] = field(default_factory=list)  # more `factory generate` arguments


# ---------------------------------------------------------------------------------------------
# The renderer


def placeholders(text: str) -> set[str]:
    """The `${NAME}` placeholders a template uses."""
    return set(_PLACEHOLDER.findall(text))


def render_template(text: str, values: Mapping[str, str | int]) -> str:
    """Replace every `${NAME}`; a placeholder without a value is an error, never left in."""
    missing = sorted(placeholders(text) - set(values))
    if missing:
        raise TemplateError(f"no value for placeholder(s) {', '.join(missing)}")
    for key, value in values.items():
        _check_value(key, value)
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def _check_value(key: str, value: str | int) -> None:
    """Values go inside double-quoted YAML strings and shell double quotes: keep them inert."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TemplateError(f"{key}: expected text or a whole number, got {type(value).__name__}")
    if isinstance(value, str) and (not value or re.search(r'["\\$`\n\r\t]', value)):
        raise TemplateError(f"{key}={value!r}: empty, or holds a quote, backslash, $, backtick or line break")


def read_template(kind: str) -> str:
    files = {"slurm": "slurm/factory.sbatch", "rayjob": "kuberay/rayjob.yaml", "cronjob": "kuberay/cronjob.yaml"}
    path = DEPLOY_DIR / files[kind]
    if not path.is_file():
        raise TemplateError(f"template {path} not found: rendering needs a factory source checkout "
                            "(the deploy/ folder is not part of the wheel)")
    return path.read_text()


# ---------------------------------------------------------------------------------------------
# Checks with the fix in the message


def check_cron(expr: str) -> None:
    """A standard five-field cron expression (what Kubernetes CronJobs accept, less @macros)."""
    fields = expr.split()
    if len(fields) != 5:
        raise TemplateError(f"schedule {expr!r}: expected 5 fields (minute hour day-of-month month "
                            f"day-of-week), e.g. '0 3 * * 1' for Mondays 03:00; got {len(fields)}")
    for text, (lo, hi), names, what in zip(fields, _CRON_RANGES, _CRON_NAMES,
                                           ("minute", "hour", "day of month", "month", "day of week")):
        for part in text.split(","):
            base, _, step = part.partition("/")
            if step and not (step.isdigit() and int(step) >= 1):
                raise TemplateError(f"schedule {expr!r}: bad step {step!r} in the {what} field")
            if base == "*":
                continue
            ends = [_cron_number(e, names, lo, hi) for e in base.split("-")]
            if len(ends) > 2 or None in ends:
                raise TemplateError(f"schedule {expr!r}: {part!r} is not a valid {what} ({lo}-{hi})")
            if len(ends) == 2 and ends[0] > ends[1]:  # type: ignore[operator]
                raise TemplateError(f"schedule {expr!r}: range {base!r} runs backwards in the {what} field")


def _cron_number(text: str, names: Mapping[str, int], lo: int, hi: int) -> int | None:
    value = names.get(text.lower()) if not text.isdigit() else int(text)
    return value if value is not None and lo <= value <= hi else None


def _check_params(p: DeployParams, kubernetes: bool) -> None:
    if kubernetes and not p.image:
        raise TemplateError("--image is required: an image with factory, Ray and vLLM installed "
                            "(docs/cluster.md shows a Dockerfile)")
    # Names become object names with suffixes (-scheduler, -rayjob, generateName's 5 characters);
    # KubeRay derives service names from RayJob names, which must stay within 63 characters.
    for key in ("name", "namespace", "config_map", "secret", "pvc"):
        value = getattr(p, key)
        if not _DNS_LABEL.match(value) or len(value) > (40 if key == "name" else 63):
            raise TemplateError(f"{key} {value!r}: use lower-case letters, digits and '-' "
                                f"({40 if key == 'name' else 63} characters at most)")
    for key in ("worker_cpus", "worker_memory", "head_cpus", "head_memory"):
        if not _QUANTITY.match(getattr(p, key)):
            raise TemplateError(f"{key} {getattr(p, key)!r} is not a Kubernetes quantity (e.g. 32, 500m, 256Gi)")
    if kubernetes and (p.gpu_workers < 1 or p.gpus_per_worker < 1):
        raise TemplateError("gpu_workers and gpus_per_worker must be at least 1")
    if p.gpu_workers < 0 or p.gpus_per_worker < 0:
        raise TemplateError("gpu_workers and gpus_per_worker cannot be negative")
    for key in ("store_mount", "config_mount"):
        if not getattr(p, key).startswith("/"):
            raise TemplateError(f"{key} {getattr(p, key)!r} must be an absolute path")
    check_cron(p.schedule)


# ---------------------------------------------------------------------------------------------
# The four outputs


def generate_command(config_path: str, p: DeployParams, store: str | None = None) -> list[str]:
    """The `factory generate` command a cluster runs (argv form)."""
    cmd = ["factory", "generate", config_path, "--no-progress"]
    if p.incremental:
        cmd.append("--incremental")
    if store:
        cmd += ["--set", f"output.store={store}"]
    return cmd + list(p.generate_args)


def kube_values(p: DeployParams) -> dict[str, str | int]:
    _check_params(p, kubernetes=True)
    import importlib.metadata

    ray_version = p.ray_version or importlib.metadata.version("ray")
    # The store lives on the PVC: a run in a pod's own filesystem would vanish with the pod.
    entry = generate_command(f"{p.config_mount.rstrip('/')}/run.yaml", p, store=f"{p.store_mount.rstrip('/')}/factory-store")
    return {
        "NAME": p.name, "NAMESPACE": p.namespace, "IMAGE": p.image or "", "RAY_VERSION": ray_version,
        "CONFIG_MAP": p.config_map, "SECRET": p.secret, "SECRET_KEY": p.secret_key, "PVC": p.pvc,
        "STORE_MOUNT": p.store_mount, "CONFIG_MOUNT": p.config_mount, "ENTRYPOINT": shlex.join(entry),
        "GPU_WORKERS": p.gpu_workers, "GPUS_PER_WORKER": p.gpus_per_worker,
        "WORKER_CPUS": p.worker_cpus, "WORKER_MEMORY": p.worker_memory,
        "HEAD_CPUS": p.head_cpus, "HEAD_MEMORY": p.head_memory,
        "SCHEDULE": p.schedule, "TIME_ZONE": p.time_zone, "KUBECTL_IMAGE": p.kubectl_image,
        "TTL_SECONDS": p.ttl_seconds, "DEADLINE_SECONDS": p.deadline_seconds,
    }


def render_rayjob(p: DeployParams) -> str:
    return render_template(read_template("rayjob"), kube_values(p))


def render_configmap(p: DeployParams, config: Mapping[str, Any]) -> str:
    """The run config as a ConfigMap (key run.yaml), mounted by the head pod at config_mount (/configs)."""
    _check_params(p, kubernetes=False)
    body = yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)
    return _dump({"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": p.config_map, "namespace": p.namespace,
                               "labels": {"app.kubernetes.io/name": "factory",
                                          "app.kubernetes.io/instance": p.name}},
                  "data": {"run.yaml": body}})


def render_cronjob(p: DeployParams) -> str:
    """ServiceAccount, Role, RoleBinding, the RayJob manifest as a ConfigMap, and the CronJob."""
    values = kube_values(p)
    rayjob = render_template(read_template("rayjob"), values)
    manifest = _dump({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": f"{p.name}-rayjob", "namespace": p.namespace,
                                   "labels": {"app.kubernetes.io/name": "factory",
                                              "app.kubernetes.io/instance": p.name}},
                      "data": {"rayjob.yaml": rayjob}})
    cron = render_template(read_template("cronjob"), values)
    return f"{manifest}---\n{cron}"


def render_slurm(p: DeployParams, config_path: str, nodes: int | None = None, output: str | None = None) -> str:
    """The batch script with its #SBATCH defaults, default config and arguments filled in.

    gpus_per_worker 0 drops the GPU request (CPU nodes); `output` is the log path (%j: the job id).
    """
    _check_params(p, kubernetes=False)
    text = read_template("slurm")
    nodes = nodes if nodes is not None else p.gpu_workers + 1
    args = generate_command(config_path, p)[4:]  # after `factory generate CONFIG --no-progress`
    subs = {
        r"^#SBATCH --job-name=.*$": f"#SBATCH --job-name={p.name}",
        r"^#SBATCH --nodes=.*$": f"#SBATCH --nodes={int(nodes)}",
        r"^#SBATCH --gpus-per-node=.*$": (f"#SBATCH --gpus-per-node={int(p.gpus_per_worker)}" if p.gpus_per_worker
                                          else "# (no GPUs requested: --gpus-per-worker 0)"),
        r"^#SBATCH --time=.*$": f"#SBATCH --time={p.slurm_time}",
        r"^#SBATCH --output=.*$": f"#SBATCH --output={output or 'factory-%j.out'}",
        r'^DEFAULT_CONFIG="".*$': f"DEFAULT_CONFIG={shlex.quote(config_path)}",
        r"^DEFAULT_ARGS=\(\).*$": f"DEFAULT_ARGS=({' '.join(shlex.quote(a) for a in args)})",
    }
    if output is not None and (not output or re.search(r"\s", output)):
        raise TemplateError(f"slurm log path {output!r}: #SBATCH lines cannot hold blanks; choose a folder without them")
    if not re.fullmatch(r"[0-9]+(-[0-9]+)?(:[0-9]{2}){0,2}", p.slurm_time):
        raise TemplateError(f"slurm time {p.slurm_time!r}: use HH:MM:SS or D-HH:MM:SS")
    for pattern, line in subs.items():
        text, count = re.subn(pattern, lambda _m, line=line: line, text, count=1, flags=re.MULTILINE)
        if count != 1:
            raise TemplateError(f"the Slurm template has no line matching {pattern!r}")
    return text


def render(kind: str, p: DeployParams, config_path: str, config: Mapping[str, Any]) -> str:
    if kind == "slurm":
        return render_slurm(p, config_path)
    if kind == "configmap":
        return render_configmap(p, config)
    if kind == "rayjob":
        return render_rayjob(p)
    if kind == "cronjob":
        return render_cronjob(p)
    raise TemplateError(f"unknown template {kind!r}; choose one of {', '.join(KINDS)}")


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (an embedded YAML file) as readable `|` blocks."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_BlockDumper.add_representer(str, _str_representer)


def _dump(doc: Mapping[str, Any]) -> str:
    return yaml.dump(dict(doc), Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=120)

