"""Writing a version's report files: the plots (while the version is built) and report.html."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from factory.report.collect import ReportData, collect
from factory.report.page import render_report
from factory.report.plots import PLOTS
from factory.store.layout import PLOT_DIR, REPORT_NAME


def write_plots(root: Path, all_files: list[Path], sampling: dict[str, Any],
                prompt_counts: Iterable[tuple[int, int]] | None = None) -> tuple[list[dict[str, str]], ReportData]:
    """Draw every plot of the rows in `all_files` into root/plots/; returns [{name, title, path}]
    (paths relative to root) and the collected data (its examples go into the manifest).
    `prompt_counts`: (accepted, samples) of every prompt of those rows, where the caller has them."""
    data = collect(all_files, sampling, prompt_counts)
    out_dir = root / PLOT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = []
    for name, (title, draw) in PLOTS.items():
        rel = f"{PLOT_DIR}/{name}.png"
        (root / rel).write_bytes(draw(data))
        plots.append({"name": name, "title": title, "path": rel})
    return plots, data


def write_report(root: Path, manifest: dict[str, Any]) -> str:
    """root/report.html for this manifest (its plots must be in root already); returns its path."""
    (root / REPORT_NAME).write_text(render_report(manifest, root), encoding="utf-8")
    return REPORT_NAME
