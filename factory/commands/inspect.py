"""factory inspect VERSION_DIR [--rejects N]: the summary of a version and a look at its rejects."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from factory.errors import UserError
from factory.runner.progress import summary_table
from factory.store.layout import MANIFEST_NAME
from factory.store.version import load_manifest, read_version_table
from factory.store.schema import count_doubled


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="summary table of a local version, and examples of rejected traces")
    p.add_argument("version", help="a version dir, e.g. factory-store/default-arithmetic/v1")
    p.add_argument("--rejects", type=int, default=3, help="show this many rejected traces per reason")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    vdir = Path(args.version)
    if not (vdir / MANIFEST_NAME).is_file():
        raise UserError(f"{vdir} is not a version (no manifest.json); list versions with `factory versions STORE/NAME`")
    console = Console()
    console.print(summary_table(load_manifest(vdir)))
    table = read_version_table(vdir, "all")
    doubled = count_doubled(table.column("messages").to_pylist())
    if doubled:
        console.print(f"[bold yellow]warning:[/bold yellow] {doubled:,} of {table.num_rows:,} rows hold their text twice "
                      "in `messages` (<think>\\nX\\n</think>\\n\\nX: the whole completion as reasoning and again as "
                      "answer), as versions made before that was fixed do; a model trained on them learns to repeat "
                      "itself. Regenerate the version, or train on `completion` instead.", highlight=False)
    shown: dict[str, int] = {}
    for row in table.to_pylist():
        reason = row["reject_reason"]
        if row["accepted"] or shown.get(reason, 0) >= args.rejects:
            continue
        shown[reason] = shown.get(reason, 0) + 1
        tail = (row["completion"] or row["error"] or "")[-300:].replace("\n", " ")
        console.print(f"[bold]{reason}[/bold] {row['prompt_id']}#{row['sample_index']} "
                      f"reference={row['reference']!r} extracted={row['extracted_answer']!r}\n  ...{tail}",
                      markup=True, highlight=False)
    return 0
