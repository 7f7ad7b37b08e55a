"""The cluster templates (deploy/) and `factory submit`'s job packaging, without a cluster.

Rendered manifests are parsed and checked with jsonschema against schemas for the subset of the
RayJob (ray.io/v1) and CronJob (batch/v1) APIs we use; the Slurm script goes through `bash -n`
and shellcheck. Each schema is also shown to reject a broken document, so it cannot pass vacuously.
The real job submission runs in tests/integration/test_multinode.py.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from factory.cli import main
from factory.cluster.templates import (
    DEPLOY_DIR,
    DeployParams,
    TemplateError,
    check_cron,
    placeholders,
    render_configmap,
    render_cronjob,
    render_rayjob,
    render_slurm,
    render_template,
)
from factory.commands.submit import entrypoint, job_env, prepare, resolve_address
from factory.config import load_config
from factory.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
SBATCH = DEPLOY_DIR / "slurm" / "factory.sbatch"
FAKE_TOKEN = "hf_unitTestSecretValue0123456789"
SECRETISH = "(?i)(TOKEN|SECRET|PASSWORD|KEY)"
CRON_FIELD = r"[0-9A-Za-z*/,\-]+"

# --- schemas for the subset of the Kubernetes / KubeRay APIs the templates use ----------------

ENV_VAR = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1}, "value": {"type": "string"},
                   "valueFrom": {"type": "object"}},
    "additionalProperties": False,
    "oneOf": [{"required": ["value"]}, {"required": ["valueFrom"]}],
    # A secret-looking variable must come from a Secret, never carry a value.
    "if": {"properties": {"name": {"pattern": SECRETISH}}},
    "then": {"required": ["valueFrom"], "not": {"required": ["value"]},
             "properties": {"valueFrom": {"required": ["secretKeyRef"],
                                          "properties": {"secretKeyRef": {
                                              "type": "object", "required": ["name", "key"]}}}}},
}
QUANTITY = {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": r"^[0-9.]+[A-Za-z]*$"}]}
CONTAINER = {
    "type": "object",
    "required": ["name", "image"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9-]+$"},
        "image": {"type": "string", "minLength": 1, "not": {"pattern": r"\$\{"}},
        "command": {"type": "array", "items": {"type": "string"}},
        "args": {"type": "array", "items": {"type": "string"}},
        "env": {"type": "array", "items": ENV_VAR},
        "resources": {"type": "object", "properties": {
            "requests": {"type": "object", "additionalProperties": QUANTITY},
            "limits": {"type": "object", "additionalProperties": QUANTITY}}},
        "volumeMounts": {"type": "array", "items": {
            "type": "object", "required": ["name", "mountPath"],
            "properties": {"mountPath": {"type": "string", "pattern": "^/"}}}},
    },
}
VOLUME = {
    "type": "object", "required": ["name"],
    "oneOf": [{"required": ["configMap"]}, {"required": ["persistentVolumeClaim"]}, {"required": ["emptyDir"]},
              {"required": ["secret"]}],
}
POD_SPEC = {
    "type": "object",
    "required": ["containers"],
    "properties": {"containers": {"type": "array", "minItems": 1, "items": CONTAINER},
                   "volumes": {"type": "array", "items": VOLUME},
                   "restartPolicy": {"enum": ["Always", "OnFailure", "Never"]},
                   "serviceAccountName": {"type": "string"}},
}
POD_TEMPLATE = {"type": "object", "required": ["spec"], "properties": {"spec": POD_SPEC}}
START_PARAMS = {"type": "object", "additionalProperties": {"type": "string"}}  # KubeRay: map[string]string
METADATA = {"type": "object", "anyOf": [{"required": ["name"]}, {"required": ["generateName"]}]}
RAYJOB_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayJob"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "required": ["entrypoint", "rayClusterSpec"],
            "properties": {
                "entrypoint": {"type": "string", "minLength": 1},
                "shutdownAfterJobFinishes": {"type": "boolean"},
                "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
                "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
                "rayClusterSpec": {
                    "type": "object",
                    "required": ["headGroupSpec", "workerGroupSpecs"],
                    "properties": {
                        "rayVersion": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+"},
                        "headGroupSpec": {"type": "object", "required": ["rayStartParams", "template"],
                                          "properties": {"rayStartParams": START_PARAMS, "template": POD_TEMPLATE}},
                        "workerGroupSpecs": {"type": "array", "minItems": 1, "items": {
                            "type": "object",
                            "required": ["groupName", "replicas", "rayStartParams", "template"],
                            "properties": {"groupName": {"type": "string"},
                                           "replicas": {"type": "integer", "minimum": 1},
                                           "minReplicas": {"type": "integer", "minimum": 0},
                                           "maxReplicas": {"type": "integer", "minimum": 1},
                                           "rayStartParams": START_PARAMS, "template": POD_TEMPLATE}}},
                    },
                },
            },
        },
    },
}
CRON_POD_SPEC = copy.deepcopy(POD_SPEC)
CRON_POD_SPEC["required"] = ["containers", "restartPolicy"]
CRON_POD_SPEC["properties"]["restartPolicy"] = {"enum": ["OnFailure", "Never"]}  # Jobs refuse Always
CRONJOB_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "batch/v1"},
        "kind": {"const": "CronJob"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["schedule", "jobTemplate"],
            "properties": {
                "schedule": {"type": "string", "pattern": rf"^\s*{CRON_FIELD}(\s+{CRON_FIELD}){{4}}\s*$"},
                "timeZone": {"type": "string"},
                "concurrencyPolicy": {"enum": ["Allow", "Forbid", "Replace"]},
                "jobTemplate": {"type": "object", "required": ["spec"], "properties": {"spec": {
                    "type": "object", "required": ["template"],
                    "properties": {"template": {"type": "object", "required": ["spec"],
                                                "properties": {"spec": CRON_POD_SPEC}}}}}},
            },
        },
    },
}


def _params(**kw: Any) -> DeployParams:
    return DeployParams(image="registry.example/factory:1.0", **kw)


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_spec["containers"]


def _check_mounts(pod_spec: dict[str, Any]) -> None:
    volumes = {v["name"] for v in pod_spec.get("volumes", [])}
    for c in _containers(pod_spec):
        for m in c.get("volumeMounts", []):
            assert m["name"] in volumes, f"{c['name']} mounts {m['name']}, which no volume defines"


# --- the renderer --------------------------------------------------------------------------


def test_raw_templates_are_yaml_and_all_placeholders_have_values() -> None:
    from factory.cluster.templates import kube_values

    values = kube_values(_params())
    for name in ("rayjob.yaml", "cronjob.yaml"):
        text = (DEPLOY_DIR / "kuberay" / name).read_text()
        assert _docs(text), name  # a template is still valid YAML before rendering
        assert placeholders(text) and placeholders(text) <= set(values), name


def test_render_template_is_strict() -> None:
    assert render_template("a: ${X} $y $(Z)", {"X": "1"}) == "a: 1 $y $(Z)"  # shell and k8s vars untouched
    with pytest.raises(TemplateError, match="no value for placeholder.*Y"):
        render_template("${X} ${Y}", {"X": "1"})
    for bad in ['x"', "a\nb", "a\\b", "$(whoami)", "`id`", ""]:
        with pytest.raises(TemplateError):
            render_template("image: \"${IMAGE}\"", {"IMAGE": bad})
    with pytest.raises(TemplateError, match="IMAGE"):
        render_rayjob(DeployParams(image='ok"\n  evil: true'))
    with pytest.raises(TemplateError, match="--image is required"):
        render_rayjob(DeployParams())
    with pytest.raises(TemplateError, match="name"):
        render_rayjob(_params(name="Factory_Run"))
    with pytest.raises(TemplateError, match="quantity"):
        render_rayjob(_params(worker_memory="lots"))


@pytest.mark.parametrize("expr", ["0 3 * * 1", "*/15 0-6 1,15 * mon-fri", "0 0 1 jan,jul *", "5 4 * * 7"])
def test_cron_accepts(expr: str) -> None:
    check_cron(expr)


@pytest.mark.parametrize("expr", ["0 3 * *", "0 3 * * 1 2025", "60 3 * * 1", "0 24 * * 1", "0 3 0 * *",
                                  "0 3 * 13 *", "0 3 * * 8", "*/0 * * * *", "5-2 * * * *", "@weekly", "x * * * *"])
def test_cron_rejects(expr: str) -> None:
    with pytest.raises(TemplateError, match="schedule"):
        check_cron(expr)


# --- RayJob --------------------------------------------------------------------------------


def test_rayjob_schema_and_content() -> None:
    text = render_rayjob(_params(gpu_workers=4, gpus_per_worker=8))
    assert "${" not in text
    (job,) = _docs(text)
    jsonschema.validate(job, RAYJOB_SCHEMA)
    spec = job["spec"]
    assert spec["entrypoint"].startswith("factory generate /configs/run.yaml")
    assert "--incremental" in spec["entrypoint"].split()
    assert "output.store=/data/factory-store" in spec["entrypoint"]
    assert job["metadata"]["generateName"] == "factory-"  # kubectl create: a new name per run
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    (workers,) = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert workers["replicas"] == workers["minReplicas"] == workers["maxReplicas"] == 4
    wspec = workers["template"]["spec"]
    assert wspec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 8
    # The config comes from the ConfigMap, the store from the PVC; only the head (the driver) mounts it.
    vols = {v["name"]: v for v in head["volumes"]}
    assert vols["config"]["configMap"]["name"] == "factory-config"
    assert vols["store"]["persistentVolumeClaim"]["claimName"] == "factory-store"
    assert {m["mountPath"] for m in head["containers"][0]["volumeMounts"]} == {"/configs", "/data"}
    for pod in (head, wspec):
        _check_mounts(pod)
        (token,) = [e for e in pod["containers"][0]["env"] if e["name"] == "HF_TOKEN"]
        assert token["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token", "optional": True}


def test_rayjob_schema_rejects_broken_documents() -> None:
    (job,) = _docs(render_rayjob(_params()))
    broken = copy.deepcopy(job)
    del broken["spec"]["entrypoint"]
    with pytest.raises(jsonschema.ValidationError, match="entrypoint"):
        jsonschema.validate(broken, RAYJOB_SCHEMA)
    broken = copy.deepcopy(job)
    broken["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, RAYJOB_SCHEMA)
    broken = copy.deepcopy(job)
    broken["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0  # must be a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, RAYJOB_SCHEMA)
    # A token written into the manifest is refused, whatever else the entry holds.
    broken = copy.deepcopy(job)
    broken["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "HF_TOKEN", "value": FAKE_TOKEN}]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, RAYJOB_SCHEMA)


# --- CronJob -------------------------------------------------------------------------------


def test_cronjob_schema_rbac_and_embedded_rayjob() -> None:
    docs = _docs(render_cronjob(_params(schedule="30 2 * * sun", name="weekly-math")))
    kinds = [d["kind"] for d in docs]
    assert kinds == ["ConfigMap", "ServiceAccount", "Role", "RoleBinding", "CronJob"]
    by_kind = {d["kind"]: d for d in docs}
    cron = by_kind["CronJob"]
    jsonschema.validate(cron, CRONJOB_SCHEMA)
    assert cron["spec"]["schedule"] == "30 2 * * sun"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    _check_mounts(pod)
    # The pod runs as the ServiceAccount that the Role lets create RayJobs, and nothing more.
    sa = by_kind["ServiceAccount"]["metadata"]["name"]
    assert pod["serviceAccountName"] == sa
    binding = by_kind["RoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "default"}]
    assert binding["roleRef"]["name"] == by_kind["Role"]["metadata"]["name"]
    (rule,) = by_kind["Role"]["rules"]
    assert rule["apiGroups"] == ["ray.io"] and rule["resources"] == ["rayjobs"] and "create" in rule["verbs"]
    # It creates the RayJob held in the ConfigMap it mounts, with `kubectl create` (generateName).
    (vol,) = pod["volumes"]
    assert vol["configMap"]["name"] == by_kind["ConfigMap"]["metadata"]["name"] == "weekly-math-rayjob"
    script = pod["containers"][0]["args"][0]
    assert "kubectl create -n \"default\" -f /manifests/rayjob.yaml" in script
    (job,) = _docs(by_kind["ConfigMap"]["data"]["rayjob.yaml"])
    jsonschema.validate(job, RAYJOB_SCHEMA)
    assert job["metadata"]["generateName"] == "weekly-math-"
    assert "--incremental" in job["spec"]["entrypoint"].split()
    # The skip-if-still-running check selects exactly the RayJobs this CronJob creates.
    assert f"app.kubernetes.io/instance={job['metadata']['labels']['app.kubernetes.io/instance']}" in script


def test_cronjob_script_is_valid_sh() -> None:
    docs = _docs(render_cronjob(_params()))
    script = docs[-1]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][0]
    proc = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_cronjob_schema_rejects_broken_documents() -> None:
    cron = _docs(render_cronjob(_params()))[-1]
    for path, value in [(("spec", "schedule"), "0 3 * * 1 *"), (("spec", "schedule"), "weekly")]:
        broken = copy.deepcopy(cron)
        broken[path[0]][path[1]] = value
        with pytest.raises(jsonschema.ValidationError, match="schedule|does not match"):
            jsonschema.validate(broken, CRONJOB_SCHEMA)
    broken = copy.deepcopy(cron)
    del broken["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"]
    with pytest.raises(jsonschema.ValidationError, match="restartPolicy"):
        jsonschema.validate(broken, CRONJOB_SCHEMA)
    broken["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, CRONJOB_SCHEMA)
    with pytest.raises(TemplateError, match="schedule"):
        render_cronjob(_params(schedule="0 3 * * 1 *"))


def test_configmap_round_trips_the_config(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "configs/default.yaml", ["sampling.n=8"])
    (cm,) = _docs(render_configmap(_params(), cfg.model_dump(mode="json")))
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "factory-config"
    again = load_config(None, data=yaml.safe_load(cm["data"]["run.yaml"]))
    assert again.fingerprint() == cfg.fingerprint() and again.sampling.n == 8


def test_no_secret_value_in_any_rendered_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    cfg = load_config(ROOT / "configs/default.yaml").model_dump(mode="json")
    outputs = [render_rayjob(_params()), render_cronjob(_params()), render_configmap(_params(), cfg),
               render_slurm(_params(), "configs/default.yaml")]
    for text in outputs:
        assert FAKE_TOKEN not in text and "hf_" not in text.replace("hf_...", "")
    for text in outputs[:2]:
        for doc in _docs(text):
            for env in _find(doc, "env"):
                for e in env:
                    if "TOKEN" in e["name"]:
                        assert set(e) == {"name", "valueFrom"} and "secretKeyRef" in e["valueFrom"]


def _find(node: Any, key: str) -> list[Any]:
    if isinstance(node, dict):
        return ([node[key]] if key in node else []) + [x for v in node.values() for x in _find(v, key)]
    if isinstance(node, list):
        return [x for v in node for x in _find(v, key)]
    return []


# --- Slurm ---------------------------------------------------------------------------------


def _render_slurm_text() -> str:
    return render_slurm(_params(gpu_workers=3, gpus_per_worker=4, generate_args=["--set", "sampling.n=8"]),
                        "configs/my run.yaml")


def test_sbatch_syntax_and_render() -> None:
    text = _render_slurm_text()
    for script in (SBATCH.read_text(), text):
        proc = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --nodes=4\n" in text and "#SBATCH --gpus-per-node=4\n" in text
    assert "DEFAULT_CONFIG='configs/my run.yaml'\n" in text
    assert "DEFAULT_ARGS=(--incremental --set sampling.n=8)\n" in text
    # The rendered defaults are what bash sees (quoting included).
    defaults = "\n".join(line for line in text.splitlines() if line.startswith("DEFAULT_"))
    proc = subprocess.run(["bash", "-c", defaults + '\nprintf "%s|" "$DEFAULT_CONFIG" "${DEFAULT_ARGS[@]}"'],
                          capture_output=True, text=True)
    assert proc.stdout == "configs/my run.yaml|--incremental|--set|sampling.n=8|", proc.stderr


def test_sbatch_shellcheck(tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install -y shellcheck); bash -n still ran")
    rendered = tmp_path / "rendered.sbatch"
    rendered.write_text(_render_slurm_text())
    for path in (SBATCH, rendered):
        proc = subprocess.run(["shellcheck", "--shell=bash", "--severity=info", str(path)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


def test_sbatch_refuses_a_missing_config(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(["bash", str(SBATCH)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "set FACTORY_CONFIG" in proc.stderr
    env["FACTORY_CONFIG"] = "nope.yaml"
    proc = subprocess.run(["bash", str(SBATCH)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "nope.yaml not found" in proc.stderr


# --- factory submit: packaging, addresses, environment ------------------------------------


def test_resolve_address() -> None:
    env = {"RAY_ADDRESS": "10.0.0.1:8265", "RAY_JOB_ADDRESS": "http://head:8265"}
    assert resolve_address("head2:8265", env) == "http://head2:8265"
    assert resolve_address(None, env) == "http://head:8265"
    assert resolve_address(None, {"RAY_ADDRESS": "10.0.0.1:8265"}) == "http://10.0.0.1:8265"
    assert resolve_address("https://ray.example", {}) == "https://ray.example"
    with pytest.raises(UserError, match="--address"):
        resolve_address(None, {})


def test_job_env_passes_secrets_by_name_only() -> None:
    env = job_env(["WANDB_PROJECT=math", "HF_HUB_CACHE", "MY_API_KEY"])
    assert env["HF_TOKEN"] == "${HF_TOKEN}" and env["MY_API_KEY"] == "${MY_API_KEY}"
    assert env["WANDB_PROJECT"] == "math" and env["HF_HUB_CACHE"] == "${HF_HUB_CACHE}"
    for bad, msg in [("HF_TOKEN=hf_x", "secret values"), ("AWS_SECRET_ACCESS_KEY=x", "secret values"),
                     ("OPENAI_API_KEY=x", "secret values"), ("VLLM_LOGGING_LEVEL=INFO", "sets VLLM"),
                     ("RAY_max_direct_call_object_size=1", "sets RAY_max_direct_call_object_size"),
                     ("BAD-NAME=1", "not an environment")]:
        with pytest.raises(UserError, match=msg):
            job_env([bad])


def _write_config(tmp_path: Path, **sections: Any) -> Path:
    """configs/default.yaml with the scripted engine, an absolute store, and whole sections replaced."""
    data = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    data["teacher"] = {"engine": "scripted"}
    data["output"]["store"] = str(tmp_path / "store")
    data.update(sections)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_prepare_ships_only_the_config_and_relative_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    here = tmp_path / "here"
    (here / "data").mkdir(parents=True)
    (here / "data" / "problems.jsonl").write_text('{"problem": "1+1", "answer": "2"}\n')
    (here / "bench.jsonl").write_text('{"problem": "2+2"}\n')
    config = _write_config(tmp_path, source={"path": "data/problems.jsonl"}, run={"ray_address": "10.1.1.1:6379"},
                           prefilter={"decontaminate": {"files": {"mine": "bench.jsonl", "abs": "/cluster/b.jsonl"},
                                                        "benchmarks": []}})
    work = tmp_path / "job"
    work.mkdir()
    sub = prepare(str(config), ["sampling.n=3"], True, [], work, cwd=here)
    assert sub.entrypoint == "factory generate run.yaml --no-progress --incremental"
    assert sub.runtime_env["working_dir"] == str(work)
    assert sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file()) == [
        "inputs/0-problems.jsonl", "inputs/1-bench.jsonl", "run.yaml"]
    shipped = load_config(work / "run.yaml")
    assert shipped.sampling.n == 3 and shipped.run.ray_address is None  # the job finds its cluster itself
    assert shipped.source.path == "inputs/0-problems.jsonl"
    assert (work / shipped.source.path).read_text() == (here / "data/problems.jsonl").read_text()
    files = shipped.prefilter.decontaminate.files
    assert files == {"mine": "inputs/1-bench.jsonl", "abs": "/cluster/b.jsonl"}  # absolute: read on the cluster
    # Apart from those paths and the address, the job reads exactly the config given here.
    expected = load_config(config, ["sampling.n=3"]).model_dump(mode="json")
    expected["source"]["path"] = "inputs/0-problems.jsonl"
    expected["prefilter"]["decontaminate"]["files"] = files
    expected["run"]["ray_address"] = None
    assert shipped.model_dump(mode="json") == expected
    everything = (work / "run.yaml").read_text() + repr(sub.runtime_env)
    assert FAKE_TOKEN not in everything and sub.runtime_env["env_vars"]["HF_TOKEN"] == "${HF_TOKEN}"


def test_prepare_refuses_what_would_fail_on_the_cluster(tmp_path: Path) -> None:
    work = tmp_path / "job"
    work.mkdir()
    relative_store = _write_config(tmp_path)
    with pytest.raises(UserError, match="relative path"):
        prepare(str(relative_store), ["output.store=factory-store"], False, [], work, cwd=tmp_path)
    missing = _write_config(tmp_path, source={"path": "nowhere.jsonl"})
    with pytest.raises(UserError, match="nowhere.jsonl.*not found"):
        prepare(str(missing), [], False, [], work, cwd=tmp_path)
    assert entrypoint(False) == "factory generate run.yaml --no-progress"


def test_cli_render_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RAY_JOB_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    cfg = str(ROOT / "configs/default.yaml")
    assert main(["submit", cfg, "--render", "cronjob", "--image", "img:1", "--schedule", "0 4 * * 2"]) == 0
    docs = _docs(capsys.readouterr().out)
    jsonschema.validate(docs[-1], CRONJOB_SCHEMA)
    assert docs[-1]["spec"]["schedule"] == "0 4 * * 2"
    assert main(["submit", cfg, "--render", "rayjob"]) == 2
    assert "--image is required" in capsys.readouterr().err
    assert main(["submit", cfg]) == 2
    assert "--address" in capsys.readouterr().err
    store = f"output.store={tmp_path / 'store'}"
    assert main(["submit", cfg, "--set", store, "--address", "http://127.0.0.1:9"]) == 2  # nothing listens there
    assert "cannot reach the Ray job server at http://127.0.0.1:9" in capsys.readouterr().err


# --- Slurm: schedules, the preflight check, `factory submit --slurm` ------------------------


@pytest.mark.parametrize(("spec", "after", "want"), [
    ("0 3 * * 1", "2026-12-03T09:58:30", "2026-12-07T03:00:00"),  # Thursday -> Monday
    ("0 3 * * 1", "2026-12-07T02:59:59", "2026-12-07T03:00:00"),
    ("0 3 * * 1", "2026-12-07T03:00:00", "2026-12-14T03:00:00"),  # strictly after
    ("*/15 * * * *", "2026-12-03T09:58:30", "2026-12-03T10:00:00"),
    ("30 2 1 * *", "2026-12-03T09:58:30", "2027-01-01T02:30:00"),
    ("0 0 29 2 *", "2026-12-03T09:58:30", "2028-02-29T00:00:00"),
    ("0 3 * * 7", "2026-12-03T09:58:30", "2026-12-06T03:00:00"),  # 7 is Sunday
    ("0 12 1 * mon", "2026-12-03T09:58:30", "2026-12-07T12:00:00"),  # both day fields: either matches
    ("0 9-17/4 * * mon-fri", "2026-12-04T17:00:00", "2026-12-07T09:00:00"),
])
def test_next_fire_of_a_cron_expression(spec: str, after: str, want: str) -> None:
    from datetime import datetime

    from factory.cluster.schedule import next_fire

    assert next_fire(spec, datetime.fromisoformat(after)) == datetime.fromisoformat(want)


def test_next_fire_of_a_period_counts_from_the_epoch() -> None:
    from datetime import datetime

    from factory.cluster.schedule import next_fire

    after = datetime.fromtimestamp(1_000_000_007)
    assert next_fire("every 90s", after).timestamp() == (1_000_000_007 // 90 + 1) * 90
    assert next_fire("every 6h", after).timestamp() % (6 * 3600) == 0
    for bad in ("every", "every 0m", "every 5 weeks", "every -1h"):
        with pytest.raises(TemplateError, match="'every N'"):
            next_fire(bad, after)
    with pytest.raises(TemplateError, match="expected 5 fields"):
        next_fire("0 3 * *", after)


def test_schedule_cli_prints_an_sbatch_begin_time() -> None:
    proc = subprocess.run([sys.executable, "-m", "factory.cluster.schedule", "next", "0 3 * * 1"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and re.fullmatch(r"\d{4}-\d\d-\d\dT03:00:00\n", proc.stdout), proc
    proc = subprocess.run([sys.executable, "-m", "factory.cluster.schedule", "next", "61 * * * *"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "not a valid minute" in proc.stderr


def test_render_slurm_for_cpu_nodes_and_a_log_path() -> None:
    text = render_slurm(_params(gpus_per_worker=0), "/c/run.yaml", nodes=1, output="/logs/ds-%j.out")
    assert "#SBATCH --nodes=1\n" in text and not re.search(r"^#SBATCH --gpus", text, re.MULTILINE)
    assert "#SBATCH --output=/logs/ds-%j.out\n" in text
    with pytest.raises(TemplateError, match="blanks"):
        render_slurm(_params(), "/c/run.yaml", output="/my logs/x-%j.out")


def _preflight(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "factory.cluster.preflight", *args], capture_output=True,
                          text=True, cwd=cwd, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)


def test_preflight_passes_fails_on_a_broken_config_and_skips_a_locked_dataset(tmp_path: Path) -> None:
    from factory.store.lock import dataset_lock

    store = tmp_path / "store"
    cfg = str(ROOT / "configs/default.yaml")
    ok = _preflight(cfg, "--no-progress", "--incremental", "--set", f"output.store={store}", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    bad = _preflight(cfg, "--set", "sampling.temprature=1", cwd=tmp_path)
    assert bad.returncode == 2 and "temprature" in bad.stderr and "Traceback" not in bad.stderr
    with dataset_lock(store / "default-arithmetic"):
        busy = _preflight(cfg, "--set", f"output.store={store}", cwd=tmp_path)
    assert busy.returncode == 75 and "another run is writing 'default-arithmetic'" in busy.stderr


def test_submit_slurm_without_sbatch_says_where_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    monkeypatch.chdir(tmp_path)
    cfg = str(ROOT / "configs/default.yaml")
    assert main(["submit", cfg, "--schedule", "0 3 * * 1", "--address", "http://127.0.0.1:9"]) == 2
    assert "--schedule needs --slurm" in capsys.readouterr().err
    assert main(["submit", cfg, "--slurm", "--schedule", "every 0h"]) == 2
    assert "'every N'" in capsys.readouterr().err
    assert main(["submit", cfg, "--slurm", "--nodes", "1"]) == 2
    assert "sbatch not found" in capsys.readouterr().err
    # The script was rendered all the same, where the jobs would read it.
    script = (tmp_path / "factory-slurm" / "default-arithmetic.sbatch").read_text()
    assert f"DEFAULT_CONFIG={cfg}\n" in script and "#SBATCH --nodes=1\n" in script
