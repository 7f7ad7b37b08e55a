"""factory runs STORE/NAME [--prune] [--remove RUN_ID]...: a dataset's runs, their size and state.

STORE/NAME/.runs/<run_id> is one run's working directory: its config, run.json (input identity,
state) and committed parts. Once published, every row is also in the version, so a finished run's
parts are a second copy: `--prune` deletes them and keeps run.json and config.yaml (a few KB: the
run's record, and its number is not reused). `--remove RUN_ID` deletes a run outright, e.g. an
unfinished run whose input changed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
from pathlib import Path
from typing import Any

from factory.errors import UserError
from factory.runner.runstate import read_run_json, write_json_atomic
from factory.store.layout import runs_dir
from factory.store.lock import dataset_lock
from factory.store.parts import RunDir


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list a dataset's runs (size, state); free the space finished ones hold",
                       description=__doc__.split("\n\n", 1)[1])
    p.add_argument("dataset", help="a local dataset dir, STORE/NAME")
    p.add_argument("--prune", action="store_true",
                   help="delete the parts of every finished (published) run; keep their run.json")
    p.add_argument("--remove", metavar="RUN_ID", action="append", default=[],
                   help="delete this run entirely (finished or not); repeatable")
    p.set_defaults(func=run)


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def describe_runs(dataset_dir: Path) -> list[dict[str, Any]]:
    out = []
    root = runs_dir(dataset_dir)
    for path in sorted(root.iterdir() if root.is_dir() else [], key=lambda p: p.stat().st_mtime):
        if not path.is_dir():
            continue
        meta = read_run_json(path)
        parts = path / "parts"
        pruned = bool(meta.get("pruned"))
        state = f"published {meta['published']}" if meta.get("published") else "unfinished"
        created = meta.get("created_at")
        out.append({
            "run_id": path.name,
            "state": state + (" (parts pruned)" if pruned else ""),
            "created": dt.datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M") if created else "",
            "shards": len(RunDir(path).committed_shards()) if parts.is_dir() else 0,
            "bytes": _size(path),
            "input": (meta.get("input") or {}).get("content_sha256") or (meta.get("input") or {}).get("revision"),
            "finished": bool(meta.get("published")),
        })
    return out


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    dataset_dir = Path(args.dataset)
    if not runs_dir(dataset_dir).is_dir():
        raise UserError(f"{dataset_dir} has no runs (no {runs_dir(dataset_dir)}); pass a dataset dir, STORE/NAME")
    console = Console()
    if args.prune or args.remove:
        with dataset_lock(dataset_dir):  # never under a run that is writing
            known = {r["run_id"]: r for r in describe_runs(dataset_dir)}
            for run_id in args.remove:
                if run_id not in known:
                    raise UserError(f"no run {run_id!r} in {runs_dir(dataset_dir)}; runs: {', '.join(known) or 'none'}")
                RunDir(runs_dir(dataset_dir) / run_id).remove()
                console.print(f"removed {run_id} ({_human(known[run_id]['bytes'])})")
            if args.prune:
                freed = 0
                for r in known.values():
                    parts = runs_dir(dataset_dir) / r["run_id"] / "parts"
                    if r["finished"] and r["run_id"] not in args.remove and parts.is_dir():
                        before = _size(parts)
                        shutil.rmtree(parts)
                        _mark_pruned(runs_dir(dataset_dir) / r["run_id"])
                        freed += before
                console.print(f"pruned the parts of finished runs: {_human(freed)} freed")
    runs = describe_runs(dataset_dir)
    t = Table(title=f"runs of {dataset_dir} ({_human(sum(r['bytes'] for r in runs))} in {runs_dir(dataset_dir)})")
    for col in ("run", "state", "created", "shards", "size", "input"):
        t.add_column(col, justify="right" if col in ("shards", "size") else "left")
    for r in runs:
        t.add_row(r["run_id"], r["state"], r["created"], str(r["shards"]), _human(r["bytes"]), (r["input"] or "")[:12])
    console.print(t)
    return 0


def _mark_pruned(run_dir: Path) -> None:
    meta = read_run_json(run_dir)
    meta["pruned"] = True
    write_json_atomic(run_dir / "run.json", meta)
