"""`factory pull ORG/NAME@v2 [--config all] [--to DIR]`: download exactly one version (tag) of a
Hub dataset and check every file against its manifest's sha256."""

from __future__ import annotations

import argparse

from factory.hub import parse_ref, pull

HELP = "download one version of a Hub dataset and check it against its manifest"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("pull", help=HELP, description=HELP)
    p.add_argument("ref", help="ORG/NAME@vN (ORG/NAME alone: the newest, i.e. main)")
    p.add_argument("--config", default=None, help="only this config (default, all); default: every config")
    p.add_argument("--to", default=None, help="directory to download into (default: the Hugging Face cache)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # A HubError is a UserError: the CLI prints it as "factory pull: ..." like every command.
    repo_id, revision = parse_ref(args.ref)
    path = pull(repo_id, revision, config=args.config, to=args.to)
    print(path)
    return 0
