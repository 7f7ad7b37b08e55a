"""The versions of a Hub dataset as a table; `factory versions ORG/NAME` (not a local path) calls
`list_hub_versions_table`. No sub-command of its own: `versions` is the lead's command."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table


def list_hub_versions_table(repo_id: str) -> Table:
    """One row per `vN` tag: date, rows per config, teacher, what changed. Raises HubError."""
    from rich.table import Table

    from factory.hub import list_hub_versions

    versions = list_hub_versions(repo_id)
    table = Table(title=f"{repo_id} on the Hub ({len(versions)} version(s))")
    for col in ("version", "date", "rows default", "rows all", "teacher", "changes", "commit"):
        table.add_column(col, justify="right" if col.startswith("rows") else "left")
    for v in versions:
        table.add_row(v.tag, v.date or "-", str(v.rows.get("default", "-")), str(v.rows.get("all", "-")),
                      v.teacher or "-", v.changes or "-", v.commit[:8])
    return table
