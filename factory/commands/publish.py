"""`factory publish VERSION_DIR_OR_STORE/NAME[@vN] --repo ORG/NAME [--private]`: one local version
to the Hub as one commit plus a tag `vN` (see factory/hub/publish.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from factory.api import publish
from factory.hub import HubError
from factory.store.layout import MANIFEST_NAME
from factory.store.version import latest_version

HELP = "publish a local version to the Hugging Face Hub (one commit + tag vN)"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("publish", help=HELP, description=HELP)
    p.add_argument("source", help="a version dir (STORE/NAME/v3), or STORE/NAME[@vN] (default: its newest version)")
    p.add_argument("--repo", required=True, help="Hub dataset repo, ORG/NAME (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its visibility)")
    p.set_defaults(func=run)


def resolve_version_dir(source: str) -> Path:
    """A version dir from VERSION_DIR, STORE/NAME@vN or STORE/NAME (its newest version)."""
    path, _, version = source.partition("@")
    base = Path(path)
    if version:
        target = base / version
        if not (target / MANIFEST_NAME).is_file():
            raise HubError(f"{target} is not a version (no {MANIFEST_NAME}); versions there: "
                           f"{sorted(p.name for p in base.glob('v*') if (p / MANIFEST_NAME).is_file()) or 'none'}")
        return target
    if (base / MANIFEST_NAME).is_file():
        return base
    latest = latest_version(base) if base.is_dir() else None
    if latest is None:
        raise HubError(f"{source} is neither a version dir nor a dataset dir holding versions")
    return latest


def run(args: argparse.Namespace) -> int:
    # A HubError is a UserError: the CLI prints it as "factory publish: ..." like every command.
    version_dir = resolve_version_dir(args.source)
    result = publish(version_dir, args.repo, private=args.private)
    print(result.message)
    return 0
