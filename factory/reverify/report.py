"""`factory verify`'s summary on the terminal: counts and rejects, then one row per verifier."""

from __future__ import annotations

from typing import Any

from factory.reverify.run import VerifyResult


def summary_tables(result: VerifyResult) -> tuple[Any, ...]:
    """(counts table, per-verifier table[, agreement table]) for the terminal."""
    from rich.table import Table

    t = Table(title=f"verify {result.input.name}", show_header=True)
    t.add_column("stage")
    t.add_column("count", justify="right")
    t.add_row("rows", f"{result.rows:,}")
    t.add_row("accepted", f"{result.accepted:,}")
    t.add_row("rejected", f"{result.rejected:,}")
    for reason, n in result.rejected_by_reason.most_common():
        t.add_row(f"  {reason}", f"{n:,}")
    for name, n in sorted(result.advisory_passed_on_rejected.items()):
        t.add_row(f"{name} passed on rejected rows (advisory)", f"{n:,}")
    if result.doubled:
        t.add_row("text doubled in messages (<think>X</think>X)", f"{result.doubled:,}")
    v = Table(title="verifiers", show_header=True)
    for col in ("verifier", "passed", "failed", "unknown"):
        v.add_column(col, justify="left" if col == "verifier" else "right")
    for name, c in result.verifiers.items():
        label = f"{name} (advisory)" if name in result.advisory else name
        v.add_row(label, f"{c['passed']:,}", f"{c['failed']:,}", f"{c['unknown']:,}")
    a = result.agreement
    if a is None:
        return t, v
    g = Table(title="agreement with the `expected` column", show_header=True)
    g.add_column("")
    g.add_column("rows", justify="right")
    g.add_row("labelled", f"{a.labelled:,}")
    g.add_row("agree", f"{a.agree:,} ({a.rate:.1%})" if a.labelled else "0")
    g.add_row("false accepts (expected wrong, accepted)", f"{a.false_accepts:,}")
    g.add_row("false rejects (expected right, rejected)", f"{a.false_rejects:,}")
    g.add_row("  of which cannot tell (timeout, unparseable reference...)", f"{a.cannot_tell:,}")
    return t, v, g
