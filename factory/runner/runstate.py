"""Which run directory a `factory generate` writes to, and whether it resumes one.

A run lives in STORE/NAME/.runs/<fingerprint>-<k>. The same config on the same input after an
interrupted run resumes it (its committed parts are kept; only missing shards are generated);
after a published run it starts run k+1, which becomes the next version.

A run's identity is its config fingerprint and its input (`input` in run.json: the file's or the
rows' sha256, or the Hub commit). Resuming a run whose committed parts came from a different input
would mix two inputs in one version: that is refused, with the ways on in the message.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from factory.config import Config
from factory.store.layout import runs_dir
from factory.errors import UserError
from factory.store.parts import RunDir

log = logging.getLogger(__name__)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def read_run_json(run_dir: Path) -> dict[str, Any]:
    p = run_dir / "run.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def _committed_parts(run_dir: Path) -> int:
    """Committed shards: what a resume would keep."""
    return len(RunDir(run_dir).committed_shards())


def _what_changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    changed = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return "; ".join(changed)


def _same_input(run_dir: Path, meta: dict[str, Any], input_id: dict[str, Any] | None) -> bool:
    """True when the run may go on with this input. A run with no committed part adopts the new
    input (nothing to mix); one made before inputs were recorded cannot be checked."""
    old = meta.get("input")
    if input_id is None or old == input_id:
        return True
    if old is None:
        log.warning("run %s predates input identity: cannot check that its input is unchanged", run_dir.name)
        return True
    if _committed_parts(run_dir) == 0:
        meta["input"] = input_id
        write_json_atomic(run_dir / "run.json", meta)
        return True
    return False


def _refuse_changed_input(run_dir: Path, meta: dict[str, Any], input_id: dict[str, Any]) -> UserError:
    name = input_id.get("name", "the input")
    return UserError(
        f"the input {name} changed since run {run_dir.name} started ({_what_changed(meta['input'], input_id)}); "
        f"its {_committed_parts(run_dir)} committed shard(s) came from the old input and resuming would mix the "
        f"two in one version. Either start a new run from the new input with --new-run (the unfinished run "
        f"stays in {run_dir.parent} until `factory runs {run_dir.parent.parent} --remove {run_dir.name}`), "
        f"or add only the prompts the latest version lacks with --incremental"
    )


def _new_run(runs: Path, fp: str, k: int, cfg: Config, input_id: dict[str, Any] | None) -> Path:
    run_dir = runs / f"{fp}-{k}"
    (run_dir / "parts").mkdir(parents=True, exist_ok=True)
    import yaml

    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    meta: dict[str, Any] = {"run_id": run_dir.name, "fingerprint": fp, "created_at": time.time()}
    if input_id is not None:
        meta["input"] = input_id
    write_json_atomic(run_dir / "run.json", meta)
    return run_dir


def open_run(dataset_dir: Path, cfg: Config, resume_id: str | None = None,
             input_id: dict[str, Any] | None = None, new_run: bool = False) -> tuple[Path, bool]:
    """Return (run_dir, resumed).

    `new_run`: never resume; start run k+1 (an unfinished run is left as it is). An incremental
    config whose input changed starts a new run too: its prompts are chosen against the latest
    version, not against the old run's parts.
    """
    runs = runs_dir(dataset_dir)
    fp = cfg.fingerprint()
    if resume_id:
        run_dir = runs / resume_id
        if not (run_dir / "run.json").is_file():
            known = sorted(p.name for p in runs.glob("*")) if runs.is_dir() else []
            raise UserError(f"no run {resume_id!r} in {runs}; runs there: {known or 'none'}")
        meta = read_run_json(run_dir)
        if meta.get("fingerprint") != fp:
            raise UserError(
                f"run {resume_id} was made with a different config (fingerprint {meta.get('fingerprint')}, "
                f"this config {fp}); resume it with its own config: {run_dir / 'config.yaml'}"
            )
        if meta.get("published"):
            raise UserError(f"run {resume_id} is finished (published as {meta['published']}); nothing to resume")
        if not _same_input(run_dir, meta, input_id):
            raise _refuse_changed_input(run_dir, meta, input_id or {})
        return run_dir, True
    mine = sorted((p for p in runs.glob(f"{fp}-*") if (p / "run.json").is_file()),
                  key=lambda p: int(p.name.rsplit("-", 1)[1]))
    k = int(mine[-1].name.rsplit("-", 1)[1]) + 1 if mine else 1
    if mine and not new_run:
        last = mine[-1]
        meta = read_run_json(last)
        if not meta.get("published"):
            if _same_input(last, meta, input_id):
                return last, True
            if not cfg.output.incremental:
                raise _refuse_changed_input(last, meta, input_id or {})
            log.warning("input changed since unfinished run %s: --incremental starts run %s-%d", last.name, fp, k)
    return _new_run(runs, fp, k, cfg, input_id), False


def mark_published(run_dir: Path, version: str) -> None:
    meta = read_run_json(run_dir)
    meta.update(published=version, published_at=time.time())
    write_json_atomic(run_dir / "run.json", meta)
