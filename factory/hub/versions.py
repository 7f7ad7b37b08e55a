"""The versions of a Hub dataset: one per `vN` tag, described from that tag's manifest.json.
`factory versions ORG/NAME` (not a local path) prints `list_hub_versions_table`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from factory.common.retry import RetryPolicy
from factory.hub.client import DEFAULT_RETRY, REPO_TYPE, open_api, remote_json, token_of, with_retries
from factory.store.layout import MANIFEST_NAME, version_number

if TYPE_CHECKING:
    from huggingface_hub import HfApi
    from rich.table import Table

T = TypeVar("T")


@dataclass(slots=True)
class HubVersion:
    tag: str
    commit: str
    date: str | None
    rows: dict[str, int]
    teacher: str | None
    changes: str | None
    parent: str | None


def list_hub_versions(repo_id: str, token: str | None = None, api: HfApi | None = None, *,
                      retry: RetryPolicy = DEFAULT_RETRY) -> list[HubVersion]:
    """Every `vN` tag of the repo, oldest first, described from that tag's manifest.json."""
    api = open_api(api, token)
    secrets = [token_of(api, token)]

    def call(fn: Callable[[], T], what: str) -> T:
        return with_retries(fn, what=what, repo_id=repo_id, policy=retry, secrets=secrets)

    refs = call(lambda: api.list_repo_refs(repo_id, repo_type=REPO_TYPE, token=token), "read refs of")
    out: list[HubVersion] = []
    for ref in sorted((t for t in refs.tags if version_number(t.name)), key=lambda t: version_number(t.name)):
        got = call(lambda: remote_json(api, repo_id, MANIFEST_NAME, ref.name, token), "read the manifest of")
        m = got[0] if got else {}
        changelog = m.get("changelog") or []
        out.append(HubVersion(
            tag=ref.name, commit=ref.target_commit, date=m.get("created_at"),
            rows={c: int(v.get("rows", 0)) for c, v in (m.get("configs") or {}).items()},
            teacher=(m.get("teacher") or {}).get("model"),
            changes=changelog[-1].get("message") if changelog else None, parent=m.get("parent")))
    return out


def list_hub_versions_table(repo_id: str) -> Table:
    """One row per `vN` tag: date, rows per config, teacher, what changed. Raises HubError."""
    from rich.table import Table

    versions = list_hub_versions(repo_id)
    table = Table(title=f"{repo_id} on the Hub ({len(versions)} version(s))")
    for col in ("version", "date", "rows default", "rows all", "teacher", "changes", "commit"):
        table.add_column(col, justify="right" if col.startswith("rows") else "left")
    for v in versions:
        table.add_row(v.tag, v.date or "-", str(v.rows.get("default", "-")), str(v.rows.get("all", "-")),
                      v.teacher or "-", v.changes or "-", v.commit[:8])
    return table
