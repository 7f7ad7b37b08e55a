"""`factory view` without a browser: headers, read-only, bad input, and resolving its target."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from factory.commands.view import resolve
from factory.errors import UserError
from factory.viewer.query import BadFilter, Filters, VersionRows
from factory.viewer.server import Viewer, ViewerServer
from tests.support.versions import build, make_rows


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    v1 = build(root / "ds", make_rows(6))
    build(root / "ds", make_rows(8), parent=v1)
    return root


@pytest.fixture(scope="module")
def server(store: Path) -> Iterator[ViewerServer]:
    s = ViewerServer(Viewer(store / "ds" / "v1"))
    s.start()
    yield s
    s.shutdown()
    s.server_close()


def _get(server: ViewerServer, path: str, method: str = "GET", host: str | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    conn.putrequest(method, path, skip_host=True)
    conn.putheader("Host", host or f"127.0.0.1:{server.server_address[1]}")
    conn.endheaders()
    return conn.getresponse()


def test_pages_forbid_script_and_the_server_is_read_only(server: ViewerServer, store: Path) -> None:
    assert server.server_address[0] == "127.0.0.1"
    before = {p: p.stat().st_mtime_ns for p in (store / "ds").rglob("*")}
    r = _get(server, "/?status=rejected")
    assert r.status == 200
    csp = r.getheader("Content-Security-Policy")
    assert "default-src 'none'" in csp and "script-src" not in csp  # no script source at all
    assert "<script" not in r.read().decode()
    for method in ("POST", "PUT", "DELETE"):
        assert _get(server, "/", method).status == 405
    assert _get(server, "/", host="evil.example:80").status == 400  # DNS rebinding
    assert _get(server, "/?page=0").status == 400 and _get(server, "/?min_pass=x").status == 400
    assert _get(server, "/trace?p=nope&s=0").status == 404
    assert _get(server, "/plots/../manifest.json").status == 404
    assert _get(server, "/plots/tokens.png").getheader("Content-Type") == "image/png"
    assert {p: p.stat().st_mtime_ns for p in (store / "ds").rglob("*")} == before


def test_queries_can_read_only_the_versions_files(store: Path) -> None:
    rows = VersionRows(store / "ds" / "v1")
    assert rows.total() == 24
    for sql in (f"COPY (SELECT 1) TO '{store}/x.csv'", f"SELECT * FROM read_parquet('{store}/ds/v2/data/all/*.parquet')",
                "SET enable_external_access = true"):
        with pytest.raises(Exception, match="disabled|Permission|locked"):
            rows._rows(sql)
    assert not (store / "x.csv").exists()


def test_filters_from_the_url() -> None:
    f = Filters.from_query({"status": ["rejected"], "min_tokens": ["100"], "reason": [""]})
    assert f == Filters(status="rejected", min_tokens=100)
    assert f.query(page=2) == "status=rejected&min_tokens=100&page=2"
    where, params = f.where()
    assert "$min_tokens" in where and params == {"min_tokens": 100}  # values are bound, never spliced
    with pytest.raises(BadFilter, match="status must be one of"):
        Filters.from_query({"status": ["x' OR 1=1"]})


def test_resolve_the_target(store: Path) -> None:
    assert resolve(str(store / "ds")) == (store / "ds" / "v2", ["v1"])
    assert resolve(str(store / "ds" / "v1")) == (store / "ds" / "v1", ["v2"])
    with pytest.raises(UserError, match="holds no versions"):
        resolve(str(store / "nothing"))
    with pytest.raises(UserError, match="is not a version"):
        resolve(str(store / "ds" / "v9"))
