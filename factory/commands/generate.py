"""factory generate CONFIG [--set a.b=value]... [--resume RUN_ID | --new-run] [--incremental]"""

from __future__ import annotations

import argparse

import yaml
from rich.console import Console
from rich.table import Table

from factory import terminal
from factory.api import generate
from factory.config import Config, load_config
from factory.runner.dryrun import dry_run
from factory.runner.progress import summary_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate, verify and store a new dataset version",
                       description="Run a config end to end: prompts -> teacher -> verifiers -> a new version "
                                   "in the local store (and the Hub, if the config has a publish section).")
    p.add_argument("config", help="YAML run config, e.g. configs/default.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set sampling.n=8 (repeatable)")
    p.add_argument("--resume", metavar="RUN_ID", help="resume this run (default: the unfinished run of this config)")
    p.add_argument("--new-run", action="store_true",
                   help="start a new run even if this config has an unfinished one (e.g. after editing the input)")
    p.add_argument("--incremental", action="store_true",
                   help="generate only prompts not in the latest version; the new version holds both")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--gpu-hour-price", type=float, metavar="PRICE",
                   help="price of one GPU-hour (or CPU engine machine-hour): the summary, card and manifest "
                        "show an estimated cost (same as --set run.gpu_hour_price=PRICE)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the config, model, store and input (rejects, prefilter, prompt lengths), print the "
                        "resolved config; start no engine, write nothing")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show vLLM's, Ray's and other libraries' output here (default: the run's factory.log)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    price = [] if args.gpu_hour_price is None else [f"run.gpu_hour_price={args.gpu_hour_price}"]
    cfg = load_config(args.config, args.overrides + price)  # validated with the rest (>= 0)
    if args.dry_run:
        return _dry_run(cfg)
    if not args.verbose:
        terminal.quiet()  # third-party output to a log in the run's folder, from here on
    if args.no_progress:
        cfg.run.progress = False
    if args.incremental:
        cfg.output.incremental = True
    result = generate(cfg, resume_id=args.resume, new_run=args.new_run)  # publishes when the config says so
    console = Console(file=terminal.stdout())
    if not result.new_version:
        # Nothing generated: the latest version's table would pass its counts off as this run's.
        console.print(f"nothing new: every prompt of the input is already in {result.version_dir.name}; "
                      f"no new version (latest: {result.version_dir})", soft_wrap=True)
        return 0
    console.print(summary_table(result.manifest))
    # soft_wrap: a path is never cut into two lines, whatever the terminal's (or a pipe's) width.
    console.print(f"version: [bold]{result.version_dir}[/bold]  (run {result.run_dir.name}"
                  f"{', resumed' if result.resumed else ''})", soft_wrap=True)
    console.print(f'load it: datasets.load_dataset("{result.version_dir}", "default")', soft_wrap=True)
    console.print(f"look at it: factory view {result.version_dir}  (or open {result.version_dir}/report.html)",
                  highlight=False, soft_wrap=True)
    if result.published is not None:
        console.print(result.published.message)
    return 0


def _dry_run(cfg: Config) -> int:
    r = dry_run(cfg)
    console = Console()
    console.print("[bold]resolved config[/bold]")
    console.print(yaml.safe_dump(r.config, sort_keys=False).rstrip(), highlight=False, markup=False)
    t = Table(title=f"dry run: {r.source.get('name')}", show_header=True)
    t.add_column("input")
    t.add_column("count", justify="right")
    t.add_row("rows read", f"{r.rows_examined:,}")
    for reason, n in sorted(r.input_rejected.items(), key=lambda kv: -kv[1]):
        where = f" (first at {r.first_rejected_at[reason]})" if reason in r.first_rejected_at else ""
        t.add_row(f"  input rejected: {reason}{where}", f"{n:,}")
    for reason, n in sorted(r.prefiltered.items()):
        t.add_row(f"  prefiltered: {reason}", f"{n:,}")
    t.add_row("prompts to generate", f"{r.prompts:,}")
    t.add_row(f"samples to generate (x{cfg.sampling.n})", f"{r.prompts * cfg.sampling.n:,}")
    if r.longest_prompt_tokens is not None:
        t.add_row("longest prompt (tokens)", f"{r.longest_prompt_tokens:,}")
        t.add_row(f"  longer than teacher.max_model_len ({cfg.teacher.max_model_len})", f"{len(r.over_context):,}")
        t.add_row(f"  leaving < sampling.max_tokens ({cfg.sampling.max_tokens}) to generate",
                  f"{r.short_of_max_tokens:,}")
    console.print(t)
    console.print(f"prompt lengths: {r.token_check}", highlight=False)
    if r.source.get("content_sha256") or r.source.get("revision"):
        console.print(f"input identity: {r.source.get('content_sha256') or r.source.get('revision')}", highlight=False)
    if r.policy_error:
        console.print(f"[bold red]a run would stop here:[/bold red] {r.policy_error}", highlight=False)
        return 2
    console.print("dry run: no engine started, nothing written")
    return 0
