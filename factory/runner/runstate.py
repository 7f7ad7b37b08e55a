"""Which run directory a `factory generate` writes to, and whether it resumes one.

A run lives in STORE/NAME/.runs/<fingerprint>-<k>. The same config after an interrupted run
resumes it (its committed parts are kept; only missing shards are generated); after a published
run it starts run k+1, which becomes the next version.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from factory.config import Config
from factory.store.layout import runs_dir


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def read_run_json(run_dir: Path) -> dict[str, Any]:
    p = run_dir / "run.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def open_run(dataset_dir: Path, cfg: Config, resume_id: str | None = None) -> tuple[Path, bool]:
    """Return (run_dir, resumed)."""
    runs = runs_dir(dataset_dir)
    fp = cfg.fingerprint()
    if resume_id:
        run_dir = runs / resume_id
        if not (run_dir / "run.json").is_file():
            known = sorted(p.name for p in runs.glob("*")) if runs.is_dir() else []
            raise FileNotFoundError(f"no run {resume_id!r} in {runs}; runs there: {known or 'none'}")
        meta = read_run_json(run_dir)
        if meta.get("fingerprint") != fp:
            raise ValueError(
                f"run {resume_id} was made with a different config (fingerprint {meta.get('fingerprint')}, "
                f"this config {fp}); resume it with its own config: {run_dir / 'config.yaml'}"
            )
        if meta.get("published"):
            raise ValueError(f"run {resume_id} is finished (published as {meta['published']}); nothing to resume")
        return run_dir, True
    mine = sorted((p for p in runs.glob(f"{fp}-*") if (p / "run.json").is_file()),
                  key=lambda p: int(p.name.rsplit("-", 1)[1]))
    if mine and not read_run_json(mine[-1]).get("published"):
        return mine[-1], True
    k = int(mine[-1].name.rsplit("-", 1)[1]) + 1 if mine else 1
    run_dir = runs / f"{fp}-{k}"
    (run_dir / "parts").mkdir(parents=True, exist_ok=True)
    import yaml

    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    write_json_atomic(run_dir / "run.json", {"run_id": run_dir.name, "fingerprint": fp, "created_at": time.time()})
    return run_dir, False


def mark_published(run_dir: Path, version: str) -> None:
    meta = read_run_json(run_dir)
    meta.update(published=version, published_at=time.time())
    write_json_atomic(run_dir / "run.json", meta)
