"""A version's card is YAML that `datasets` reads whole: loading a version prints no warning."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import datasets
import yaml

from factory.store.parts import RunDir
from factory.store.version import build_version
from tests.unit.test_store import INFO, make_rows


def test_load_dataset_of_a_version_warns_nothing(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.commit_part(0, make_rows({"a": 0, "b": 1}))
    vdir = build_version(tmp_path / "ds", run, INFO)
    front = yaml.safe_load((vdir / "README.md").read_text().split("---")[1])
    for info in front["dataset_info"]:
        split = info["splits"][0]
        assert split["num_bytes"] > 0 and split["num_examples"] in (2, 4)

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("datasets")  # datasets logs to its own logger, not the root
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for config in ("default", "all"):
                datasets.load_dataset(str(vdir), config, split="train")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == []
    assert [str(w.message) for w in caught] == []
