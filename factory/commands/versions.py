"""factory versions STORE/NAME | ORG/NAME : list a dataset's versions (STORE alone: its datasets)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from factory.errors import UserError
from factory.hub.versions import list_hub_versions_table
from factory.store.layout import runs_dir
from factory.store.version import list_versions


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("versions", help="list the versions of a dataset (local store dir or Hub repo)")
    p.add_argument("dataset", help="a local dataset dir (STORE/NAME) or a Hub repo id (ORG/NAME)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = Console()
    path = Path(args.dataset)
    if not path.is_dir():
        if path.exists() or args.dataset.count("/") != 1 or args.dataset.startswith((".", "/")):
            raise UserError(f"{args.dataset} is neither a local dataset directory nor a Hub repo id (ORG/NAME)")
        console.print(list_hub_versions_table(args.dataset))
        return 0
    versions = list_versions(path)
    if not versions:
        datasets = sorted(d for d in path.iterdir() if d.is_dir() and (list_versions(d) or runs_dir(d).is_dir()))
        if datasets:  # a store, not a dataset: say what it holds
            t = Table(title=f"datasets in the store {path}")
            for col in ("dataset", "versions", "latest"):
                t.add_column(col)
            for d in datasets:
                vs = list_versions(d)
                t.add_row(str(d), str(len(vs)), vs[-1].version if vs else "(no version yet)")
            console.print(t)
            console.print(f"list one dataset's versions with `factory versions {datasets[0]}`")
            return 0
        raise UserError(f"no versions in {path} yet; make one with `factory generate CONFIG`")
    t = Table(title=str(path))
    for col in ("version", "created", "default rows", "all rows", "teacher", "run"):
        t.add_column(col)
    for v in versions:
        t.add_row(v.version, v.created_at or "", f"{v.rows.get('default', 0):,}", f"{v.rows.get('all', 0):,}",
                  v.teacher_model or "", v.run_id or "")
    console.print(t)
    return 0
