"""Queries over one version's `all` rows, straight from its Parquet files (DuckDB).

Why DuckDB: it reads only the columns and row groups a query needs and stops at LIMIT, so a page
of a million-row version costs milliseconds and the version is never loaded whole; the queries are
fixed SQL with bound parameters (nothing from the URL is ever spliced into SQL); and the
connection is locked down to reading exactly the version's files (no other file, no writes, no
network), which makes "read-only" a property of the engine, not only of our code.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from factory.errors import UserError
from factory.store.manifest import load_manifest

PAGE_SIZE = 50
EXCERPT = 160  # characters of the problem in the list
LIST_COLUMNS = ("prompt_id, sample_index, accepted, reject_reason, num_tokens, pass_rate, finish_reason, "
                f"extracted_answer, reference, substr(problem, 1, {EXCERPT}) AS problem")
STATUSES = ("all", "accepted", "rejected")


class BadFilter(UserError, ValueError):
    """A filter value in the URL that cannot be used; the message says which and why."""


def _number(raw: str | None, name: str, kind: type) -> Any:
    if raw is None or raw.strip() == "":
        return None
    try:
        return kind(raw)
    except ValueError:
        raise BadFilter(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True, slots=True)
class Filters:
    """What the list shows; every field comes from the URL and goes to SQL as a bound parameter."""

    status: str = "all"
    reason: str | None = None
    verifier: str | None = None  # rows this verifier did not pass (failed or could not tell)
    min_pass: float | None = None
    max_pass: float | None = None
    min_tokens: int | None = None
    max_tokens: int | None = None

    @classmethod
    def from_query(cls, q: dict[str, list[str]]) -> "Filters":
        def one(name: str) -> str | None:
            v = q.get(name)
            return v[-1] if v else None

        status = one("status") or "all"
        if status not in STATUSES:
            raise BadFilter(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        return cls(status=status, reason=one("reason") or None, verifier=one("verifier") or None,
                   min_pass=_number(one("min_pass"), "min pass rate", float),
                   max_pass=_number(one("max_pass"), "max pass rate", float),
                   min_tokens=_number(one("min_tokens"), "min tokens", int),
                   max_tokens=_number(one("max_tokens"), "max tokens", int))

    def where(self) -> tuple[str, dict[str, Any]]:
        clauses, params = [], {}
        if self.status == "accepted":
            clauses.append("accepted IS TRUE")
        elif self.status == "rejected":
            clauses.append("accepted IS NOT TRUE")
        if self.reason is not None:
            clauses.append("reject_reason = $reason")
            params["reason"] = self.reason
        if self.verifier is not None:
            clauses.append("len(list_filter(verdicts, lambda v: v.name = $verifier AND v.passed IS NOT TRUE)) > 0")
            params["verifier"] = self.verifier
        for column, op, name in (("pass_rate", ">=", "min_pass"), ("pass_rate", "<=", "max_pass"),
                                 ("num_tokens", ">=", "min_tokens"), ("num_tokens", "<=", "max_tokens")):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"{column} {op} ${name}")
                params[name] = value
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def query(self, **extra: Any) -> str:
        """This filter (and `extra`, e.g. page=3) as a URL query string, defaults left out."""
        items = [(f.name, getattr(self, f.name)) for f in fields(self)]
        items += list(extra.items())
        return urlencode([(k, v) for k, v in items if v is not None and not (k == "status" and v == "all")])

    def but(self, **change: Any) -> "Filters":
        return replace(self, **change)


class VersionRows:
    """One version's `all` rows, queried in place. Thread-safe: a cursor per query."""

    def __init__(self, version_dir: Path) -> None:
        import duckdb

        self.version_dir = version_dir
        self.manifest = load_manifest(version_dir)
        files = [str((version_dir / f["path"]).resolve()) for f in self.manifest.get("files", [])
                 if f.get("config") == "all"]
        if not files:
            raise UserError(f"{version_dir} has no `all` files in its manifest: nothing to show")
        self._con = duckdb.connect(":memory:")
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        self._con.execute(f"CREATE VIEW rows AS SELECT * FROM read_parquet([{listed}])")
        # From here on the connection can read these files and nothing else, and write nothing.
        self._con.execute("SET allowed_paths = $files", {"files": files})
        self._con.execute("SET enable_external_access = false")
        self._con.execute("SET lock_configuration = true")
        self._lock = threading.Lock()
        self._reasons: list[tuple[str, int]] | None = None
        self._verifiers: list[str] | None = None

    def _rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._con.cursor()
        try:
            cur.execute(sql, params or {})
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
        finally:
            cur.close()

    def total(self) -> int:
        return int(self._rows("SELECT count(*) AS n FROM rows")[0]["n"])

    def reasons(self) -> list[tuple[str, int]]:
        """Reject reasons with their counts, most common first (from the rows: always true)."""
        if self._reasons is None:
            got = self._rows("SELECT reject_reason AS r, count(*) AS n FROM rows WHERE reject_reason IS NOT NULL "
                             "GROUP BY 1 ORDER BY 2 DESC, 1")
            self._reasons = [(g["r"], int(g["n"])) for g in got]
        return self._reasons

    def verifiers(self) -> list[str]:
        if self._verifiers is None:
            listed = [v.get("name") for v in self.manifest.get("verifiers") or [] if v.get("name")]
            if not listed:
                got = self._rows("SELECT DISTINCT unnest(verdicts).name AS name FROM rows ORDER BY 1")
                listed = [g["name"] for g in got if g["name"]]
            self._verifiers = listed
        return self._verifiers

    def count(self, f: Filters) -> int:
        where, params = f.where()
        return int(self._rows(f"SELECT count(*) AS n FROM rows{where}", params)[0]["n"])

    def page(self, f: Filters, offset: int, limit: int = PAGE_SIZE) -> list[dict[str, Any]]:
        """Matching rows in the version's order (DuckDB keeps a scan's order under LIMIT/OFFSET)."""
        where, params = f.where()
        params.update(limit=limit, offset=offset)
        return self._rows(f"SELECT {LIST_COLUMNS} FROM rows{where} LIMIT $limit OFFSET $offset", params)

    def trace(self, prompt_id: str, sample_index: int) -> dict[str, Any] | None:
        got = self._rows("SELECT * FROM rows WHERE prompt_id = $p AND sample_index = $s LIMIT 1",
                         {"p": prompt_id, "s": sample_index})
        return got[0] if got else None

    def samples(self, prompt_id: str) -> list[dict[str, Any]]:
        """Every sample of one problem, by sample index."""
        return self._rows(f"SELECT {LIST_COLUMNS} FROM rows WHERE prompt_id = $p ORDER BY sample_index",
                          {"p": prompt_id})
