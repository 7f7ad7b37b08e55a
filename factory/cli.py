"""`factory` command line: parse, hand off, return an exit code.

Each subcommand is one module in factory/commands with `add_parser(subparsers)` and `run(args)`.
Errors a user can fix print one clear message (no traceback) and exit 2 (75 when another run holds
the dataset's lock: nothing is wrong, try later; a scheduled cluster job then skips its firing).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
import traceback

import factory.commands as commands
from factory import __version__, terminal
from factory.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="factory", description="Verified reasoning-dataset factory.")
    parser.add_argument("--version", action="version", version=f"factory {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"factory.commands.{mod.name}")
        if hasattr(module, "add_parser"):
            module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (UserError, FileNotFoundError) as e:
        print(f"factory {args.command}: {e}", file=terminal.stderr())
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt:
        print("interrupted: committed parts are kept; run the same command again to resume", file=terminal.stderr())
        return 130
    except Exception:
        if terminal.log_path() is None:
            raise
        # A bug, or a failure factory did not foresee: the traceback belongs on the terminal, not
        # only in the log that third-party output is going to.
        traceback.print_exc(file=terminal.stderr())
        print(f"factory {args.command}: failed; the log of this run: {terminal.log_path()}", file=terminal.stderr())
        return 1


if __name__ == "__main__":
    sys.exit(main())
