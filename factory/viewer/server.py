"""`factory view`'s web server: the stdlib's ThreadingHTTPServer on 127.0.0.1, GET only.

Why the standard library: the viewer is one user's local page with a handful of routes and no
script, so a framework would add dependencies and nothing else; http.server is always there,
and ThreadingHTTPServer keeps a slow query from blocking the next page.

Safety: every page is rendered on the server with every value escaped; each answer carries a
Content-Security-Policy that allows no script at all (and no fetch, no frame, no form target but
this server), so text from a trace can never run as code even if an escape were missed. The
Host header must name this server (a page on another site cannot reach it by DNS rebinding).
Nothing is ever written: the data is queried through a read-only DuckDB connection.
"""

from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from factory.report.page import REPORT_CSP, STYLE
from factory.store.layout import REPORT_NAME
from factory.viewer import pages
from factory.viewer.query import PAGE_SIZE, BadFilter, Filters, VersionRows

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
MAX_PAGE = 10_000_000


class Viewer:
    """What the server shows: one version's rows, its report, the names of its sibling versions."""

    def __init__(self, version_dir: Path, others: list[str] | None = None) -> None:
        self.rows = VersionRows(version_dir)
        self.manifest = self.rows.manifest
        self.others = others or []
        self.total = self.rows.total()
        self.files = {f["path"] for f in self.manifest.get("files") or []}

    def list(self, q: dict[str, list[str]]) -> str:
        f = Filters.from_query(q)
        raw = (q.get("page") or ["1"])[-1]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
            raise BadFilter(f"page must be a whole number from 1, got {raw!r}")
        page_no = int(raw)
        matching = self.rows.count(f)
        rows = self.rows.page(f, (page_no - 1) * PAGE_SIZE)
        return pages.list_page(self.manifest, self.total, self.others, f, self.rows.reasons(),
                               self.rows.verifiers(), matching, page_no, rows)

    def trace(self, q: dict[str, list[str]]) -> str | None:
        pid, sample = (q.get("p") or [""])[-1], (q.get("s") or [""])[-1]
        if not sample.isdigit():
            raise BadFilter(f"s (the sample index) must be a whole number, got {sample!r}")
        row = self.rows.trace(pid, int(sample))
        if row is None:
            return None
        back = (q.get("back") or [""])[-1]
        return pages.trace_page(self.manifest, self.total, self.others, row, self.rows.samples(pid), back)


class _Handler(BaseHTTPRequestHandler):
    server: "ViewerServer"
    server_version = "factory-view"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if not self._host_ok():
            return self._send(HTTPStatus.BAD_REQUEST, pages.error_page(400, "unexpected Host header"))
        url = urlsplit(self.path)
        q = parse_qs(url.query, keep_blank_values=True)
        viewer = self.server.viewer
        try:
            if url.path == "/":
                return self._send(HTTPStatus.OK, viewer.list(q))
            if url.path == "/trace":
                body = viewer.trace(q)
                if body is None:
                    return self._send(HTTPStatus.NOT_FOUND, pages.error_page(404, "no such trace in this version"))
                return self._send(HTTPStatus.OK, body)
            if url.path == "/style.css":
                return self._send(HTTPStatus.OK, STYLE, "text/css; charset=utf-8")
            if url.path == "/report" and REPORT_NAME in viewer.files:
                data = (viewer.rows.version_dir / REPORT_NAME).read_bytes()
                return self._send(HTTPStatus.OK, data, csp=REPORT_CSP)
            rel = url.path.lstrip("/")
            if rel.startswith("plots/") and rel.endswith(".png") and rel in viewer.files:
                return self._send(HTTPStatus.OK, (viewer.rows.version_dir / rel).read_bytes(), "image/png")
        except BadFilter as e:
            return self._send(HTTPStatus.BAD_REQUEST, pages.error_page(400, str(e)))
        except Exception:  # noqa: BLE001 - one bad request must not stop the viewer
            log.exception("factory view: %s failed", self.path)
            return self._send(HTTPStatus.INTERNAL_SERVER_ERROR,
                              pages.error_page(500, "this page failed; the terminal running `factory view` says why"))
        return self._send(HTTPStatus.NOT_FOUND, pages.error_page(404, "no such page"))

    def do_POST(self) -> None:  # noqa: N802
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, pages.error_page(405, "the viewer is read-only"))

    do_PUT = do_DELETE = do_PATCH = do_POST

    def _host_ok(self) -> bool:
        port = self.server.server_address[1]
        return self.headers.get("Host", "") in {f"{HOST}:{port}", f"localhost:{port}"}

    def _send(self, status: HTTPStatus, body: str | bytes, ctype: str = "text/html; charset=utf-8",
              csp: str = CSP) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Security-Policy", csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        log.debug("factory view: " + format, *args)


class ViewerServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, viewer: Viewer, port: int = 0) -> None:
        super().__init__((HOST, port), _Handler)
        self.viewer = viewer

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    def start(self) -> threading.Thread:
        """Serve in a background thread (tests); `shutdown()` stops it."""
        t = threading.Thread(target=self.serve_forever, name="factory-view", daemon=True)
        t.start()
        return t
