"""The seconds-long check a cluster job makes before it starts Ray or an engine.

    python -m factory.cluster.preflight CONFIG [factory generate's arguments...]

deploy/slurm/factory.sbatch runs this first, with the same arguments it gives `factory generate`:

- exit 0: the config loads and no other run holds the dataset's lock: go on;
- exit 2: the config is broken (its message, the same `factory generate` would print, is on stderr,
  so it lands in the job's log within seconds, not after Ray and the engine have started);
- exit 75 (EX_TEMPFAIL): another run is writing this dataset (the lock's message says who); a
  scheduled firing that overlaps the previous one then skips, and the next firing picks up.

The lock is only tested, not kept: `factory generate` takes it for itself a moment later; if
another writer got in between, generate stops at the lock with the same exit 75.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from factory.config import load_config
from factory.errors import UserError
from factory.store.lock import DatasetLocked, dataset_lock

def _parse(argv: list[str]) -> argparse.Namespace:
    """The config and `--set` overrides out of `factory generate`'s arguments; its other flags are
    left for generate itself to judge (a new one must not make this check fail)."""
    parser = argparse.ArgumentParser(prog="factory preflight", add_help=False)
    parser.add_argument("config")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    return parser.parse_known_args(argv)[0]


def check(argv: list[str]) -> int:
    args = _parse(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        with dataset_lock(Path(cfg.output.store) / cfg.output.name):
            pass
    except DatasetLocked as e:
        print(f"factory preflight: {e}", file=sys.stderr)
        return DatasetLocked.exit_code
    except (UserError, FileNotFoundError) as e:
        print(f"factory generate: {e}", file=sys.stderr)
        return 2
    print(f"factory preflight: config {args.config} is valid; dataset {cfg.output.store}/{cfg.output.name} is free")
    return 0


if __name__ == "__main__":
    sys.exit(check(sys.argv[1:]))
