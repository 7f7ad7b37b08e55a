"""Names in the store, in one place: STORE/NAME/{vN/, .runs/<run_id>/} and a version's files.

    STORE/NAME/vN/manifest.json     what was run, counts, a sha256 per data file
    STORE/NAME/vN/README.md         the dataset card
    STORE/NAME/vN/data/<config>/    Parquet files of `default` (accepted) and `all`
    STORE/NAME/vN/plots/*.png       the report's plots (the card embeds them)
    STORE/NAME/vN/report.html       the report: one self-contained page
    STORE/NAME/.runs/<run_id>/      one run's working directory (parts, run.json)

A Hub repo holds the same manifest.json and README.md at its root, and tags `vN`.
"""

from __future__ import annotations

import re
from pathlib import Path

MANIFEST_NAME = "manifest.json"
CARD_NAME = "README.md"
RUNS_DIR = ".runs"
DATA_DIR = "data"
PLOT_DIR = "plots"
REPORT_NAME = "report.html"

# ASCII digits only, no leading zero: "v3" -> 3; "v03", "v0", "v", "V3", "v3 ", "v²" -> None.
# (str.isdigit() accepts "²" and "١", which int() then rejects or reads as another number.)
_VERSION = re.compile(r"v([1-9][0-9]*)")


def version_number(name: str) -> int | None:
    """3 for "v3" (a version directory or a Hub tag); None for anything else."""
    m = _VERSION.fullmatch(name)
    return int(m.group(1)) if m else None


def version_name(number: int) -> str:
    return f"v{number}"


def dataset_path(store: str | Path, name: str) -> Path:
    """A dataset's folder in a local store: STORE/NAME."""
    return Path(store) / name


def version_path(dataset_dir: str | Path, version: str) -> Path:
    """A version's folder: STORE/NAME/vN."""
    return Path(dataset_dir) / version


def runs_dir(dataset_dir: str | Path) -> Path:
    """Where a dataset's runs live: STORE/NAME/.runs."""
    return Path(dataset_dir) / RUNS_DIR


def config_dir(version_dir: str | Path, config: str) -> Path:
    """A version's Parquet files of one config: vN/data/<config>."""
    return Path(version_dir) / DATA_DIR / config
