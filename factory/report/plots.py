"""The report's plots as PNG bytes, drawn with matplotlib's Agg renderer.

Why matplotlib/Agg: it is the well-kept default of scientific Python, renders headless (no display,
no browser, no network) to plain PNG files that the Hub's card page, a browser from disk and
report.html all show the same, and it is deterministic given the same data (no timestamps in the
PNG: see SAVE). Figures are made with `matplotlib.figure.Figure`, not pyplot, so no global state
or backend switch is touched in the caller's process. Imported lazily: it is a heavy import that
only the version build and the report need.
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

from factory.report.collect import ACCEPTED, ReportData

SIZE = (7.0, 3.6)  # inches; at DPI about 700x360 px, some 20-40 KB a plot
DPI = 100
SAVE: dict[str, Any] = {"format": "png", "dpi": DPI, "metadata": {"Software": None}}
ACCEPTED_COLOR, REJECTED_COLOR, BUDGET_COLOR = "#2a9d8f", "#e76f51", "#264653"
TOP_REASONS = 12
SPEND_REASONS = 6
PALETTE = ["#e76f51", "#f4a261", "#e9c46a", "#8d99ae", "#b5838d", "#6d6875", "#bbbbbb"]


def _figure() -> tuple[Any, Any]:
    """A Figure and its Axes; counts on the y axis are whole numbers."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, ax


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, **SAVE)
    return buf.getvalue()


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=12, color="#555")
    ax.set_xticks([])
    ax.set_yticks([])


def pass_rate(data: ReportData) -> bytes:
    """How many problems the teacher solved in what share of its samples: the difficulty spread."""
    fig, ax = _figure()
    rates = data.pass_rates()
    ax.set_title(f"Pass rate per problem ({sum(rates.values()):,} problems)")
    if not rates:
        _empty(ax, "no problems")
        return _png(fig)
    distinct: Counter = Counter()
    for r, prompts in rates.items():
        distinct[round(r, 4)] += prompts
    samples = {n for _, n in data.pass_counts}
    if len(samples) == 1 and (n := samples.pop()) <= 16:  # one bar per possible rate: 0, 1/n, ... 1
        xs = [round(k / n, 4) for k in range(n + 1)]
        ax.bar(range(len(xs)), [distinct.get(x, 0) for x in xs], color=ACCEPTED_COLOR)
        ax.set_xticks(range(len(xs)), [f"{k}/{n}" for k in range(n + 1)])
    elif len(distinct) <= 17:
        xs = sorted(distinct)
        ax.bar(range(len(xs)), [distinct[x] for x in xs], color=ACCEPTED_COLOR)
        ax.set_xticks(range(len(xs)), [f"{x:.2g}" for x in xs])
    else:
        ax.hist(list(rates), weights=list(rates.values()), bins=[i / 10 for i in range(11)], color=ACCEPTED_COLOR,
                edgecolor="white")
    ax.set_xlabel("pass rate (accepted samples / samples)")
    ax.set_ylabel("problems")
    return _png(fig)


def lengths(data: ReportData) -> bytes:
    """num_tokens of accepted and rejected traces on shared bins, the token budget marked."""
    import numpy as np

    fig, ax = _figure()
    ax.set_title("Output length: accepted vs rejected traces")
    everything = data.tokens_accepted + data.tokens_rejected
    if not everything:
        _empty(ax, "no traces")
        return _png(fig)
    top = max(max(everything), data.budget or 0, 1)
    bins = np.linspace(0, top, 41)
    for label, counts, color in (("accepted", data.tokens_accepted, ACCEPTED_COLOR),
                                 ("rejected", data.tokens_rejected, REJECTED_COLOR)):
        if counts:
            values = np.fromiter(counts.keys(), dtype=float)
            weights = np.fromiter(counts.values(), dtype=float)
            ax.hist(values, bins=bins, weights=weights, color=color, alpha=0.6,
                    label=f"{label} ({int(weights.sum()):,})")
        else:
            ax.plot([], [], color=color, label=f"{label} (0)")
    if data.budget:
        ax.axvline(data.budget, color=BUDGET_COLOR, linestyle="--", linewidth=1.5,
                   label=f"budget: max_tokens = {data.budget:,}")
    ax.set_xlabel("output tokens (num_tokens)")
    ax.set_ylabel("traces")
    ax.legend(loc="upper right", fontsize=9)
    return _png(fig)


def rejects(data: ReportData) -> bytes:
    """Rejected traces per `verifier:reason`, most common first."""
    fig, ax = _figure()
    total = sum(data.reasons.values())
    ax.set_title(f"Rejects by verifier:reason ({total:,} rejected)")
    if not total:
        _empty(ax, "no trace was rejected")
        return _png(fig)
    top = data.reasons.most_common(TOP_REASONS)
    rest = total - sum(n for _, n in top)
    if rest:
        top.append((f"{len(data.reasons) - TOP_REASONS} other reasons", rest))
    labels = [r if len(r) <= 40 else r[:39] + "…" for r, _ in top][::-1]
    counts = [n for _, n in top][::-1]
    bars = ax.barh(range(len(top)), counts, color=REJECTED_COLOR)
    ax.set_yticks(range(len(top)), labels, fontsize=9)
    ax.bar_label(bars, [f"{n:,}" for n in counts], padding=3, fontsize=8)
    ax.set_xlabel("rejected traces")
    ax.margins(x=0.12)
    return _png(fig)


def token_spend(data: ReportData) -> bytes:
    """Output tokens per round of sampling, split by what became of the trace: where the compute went."""
    fig, ax = _figure()
    total = sum(data.token_spend.values())
    ax.set_title(f"Where the output tokens went ({total:,} tokens)")
    if not total:
        _empty(ax, "no output tokens")
        return _png(fig)
    by_reason = Counter()
    for (_, outcome), n in data.token_spend.items():
        if outcome != ACCEPTED:
            by_reason[outcome] += n
    shown = [r for r, _ in by_reason.most_common(SPEND_REASONS)]
    outcomes = [ACCEPTED] + shown + (["other rejects"] if len(by_reason) > len(shown) else [])
    rounds = list(range(data.rounds))
    grid = {o: [0] * len(rounds) for o in outcomes}
    for (r, outcome), n in data.token_spend.items():
        key = outcome if outcome in grid else "other rejects"
        grid[key][r] += n
    left = [0] * len(rounds)
    for i, o in enumerate(outcomes):
        color = ACCEPTED_COLOR if o == ACCEPTED else PALETTE[min(i - 1, len(PALETTE) - 1)]
        label = o if o == ACCEPTED else f"rejected: {o}"
        ax.barh(rounds, grid[o], left=left, color=color, label=label)
        left = [a + b for a, b in zip(left, grid[o])]
    ax.set_yticks(rounds, [f"round {r + 1}" for r in rounds] if len(rounds) > 1 else ["all samples"])
    ax.invert_yaxis()
    ax.set_xlabel("output tokens")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, fontsize=8, frameon=False)
    return _png(fig)


# name -> (title, drawer); the file is plots/<name>.png
PLOTS = {
    "pass_rate": ("Pass rate per problem", pass_rate),
    "length": ("Output length of accepted and rejected traces", lengths),
    "rejects": ("Rejects by verifier:reason", rejects),
    "tokens": ("Where the output tokens went", token_spend),
}
