"""factory verify INPUT [--verifiers a,b | --config C.yaml] [--set K=V]... [--out OUT.parquet]

Re-verify existing traces without generating (see factory/reverify/__init__.py): a version dir or a
JSONL/JSON/Parquet file in, a Parquet file with fresh verdicts out.
"""

from __future__ import annotations

import argparse

from rich.console import Console

from factory.api import verify
from factory.errors import UserError
from factory.reverify import summary_tables

HELP = "re-verify existing traces (a version dir or a JSONL/Parquet file) without generating"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify", help=HELP,
        description=HELP + ". Writes every input column plus fresh verdict columns (accepted, "
                    "reject_reason, verdicts, ...) to a new Parquet file; the input is never rewritten.")
    p.add_argument("input", help="a version dir (STORE/NAME/vN; STORE/NAME: its newest), or a .jsonl/.json/.parquet "
                                 "file with problem, completion (or messages) and reference (or tests); an `expected` "
                                 "column (true/false) adds agreement figures")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--verifiers", metavar="A,B", help="verifier names, default parameters, e.g. truncation,math "
                                                          "(default: the version's own; for files truncation,math)")
    which.add_argument("--config", metavar="CONFIG.yaml", help="a YAML with a `verifiers:` list (a run config works)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set teacher.expects_think_tags=true (repeatable)")
    p.add_argument("--out", metavar="OUT.parquet",
                   help="output file (default: INPUT stem + .verified.parquet beside it)")
    p.add_argument("--extraction", metavar="MODE", help="answer extraction: final, boxed, answer_is, boxed_or_answer_is, "
                                                        "last_number (default: the math verifier's, final)")
    p.add_argument("--workers", type=int, metavar="N", help="verification worker processes (default: CPU count)")
    p.add_argument("--batch-size", type=int, default=1000, metavar="N", help="rows held in memory at once (1000)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (never the input)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be at least 1")
    names = [n.strip() for n in args.verifiers.split(",") if n.strip()] if args.verifiers else None
    if args.verifiers is not None and not names:
        raise UserError("--verifiers needs at least one name, e.g. --verifiers truncation,math")
    result = verify(args.input, config=args.config, verifiers=names, overrides=args.overrides,
                    extraction=args.extraction, out=args.out, workers=args.workers, batch_rows=args.batch_size,
                    progress=False if args.no_progress else None, overwrite=args.overwrite)
    console = Console()
    for table in summary_tables(result):
        console.print(table)
    console.print(f"written: [bold]{result.out}[/bold]")
    return 0
