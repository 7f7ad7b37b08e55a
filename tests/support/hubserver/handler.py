"""HTTP plumbing of the local Hub: request parsing, routing to the endpoints, auth, replies."""

from __future__ import annotations

import hashlib
import json
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.hubserver.endpoints import Endpoints
from tests.support.hubserver.state import REPO_TYPES, Commit, HubError, HubState, Repo

if TYPE_CHECKING:
    from tests.support.hubserver import HubServer


class Handler(Endpoints, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "HubServer"

    # Quiet: the default handler logs every request to stderr.
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    @property
    def state(self) -> HubState:
        return self.server.state

    @property
    def base(self) -> str:
        return self.server.url

    # ------------------------------------------------------------------ plumbing

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _body(self) -> bytes:
        if getattr(self, "_cached_body", None) is not None:
            return self._cached_body
        n = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self._cached_body = b"".join(chunks)
        else:
            self._cached_body = self.rfile.read(n) if n else b""
        return self._cached_body

    def _json(self) -> Any:
        return json.loads(self._body() or b"{}")

    def _send(self, status: int, body: bytes | None = None, headers: dict[str, str] | None = None,
              content_type: str = "application/json", length: int | None = None) -> None:
        self.send_response(status)
        hdrs = {"Content-Type": content_type, **(headers or {})}
        for k, v in hdrs.items():
            self.send_header(k, v)
        body = body or b""
        self.send_header("Content-Length", str(length if length is not None else len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _dispatch(self, method: str) -> None:
        self._cached_body = None
        split = urlsplit(self.path)
        self._query = parse_qs(split.query, keep_blank_values=True)
        record: dict[str, Any] = {"method": method, "path": split.path, "op": "unknown", "status": None}
        try:
            route = self._route(method, split.path)
            if route is None:
                raise HubError(404, f"no route for {method} {split.path}")
            op, fn, kwargs = route
            record["op"] = op
            record.update({k: v for k, v in kwargs.items() if isinstance(v, str)})
            self._check_auth(op, kwargs)
            failure = self.state._injected(op)
            if failure is not None:
                self._body()  # read what the client sent, like a server that fails late
                if failure.status == 0:
                    record["status"] = 0
                    self.close_connection = True
                    self.connection.close()  # the client sees a reset / remote protocol error
                    return
                raise HubError(failure.status, failure.message)
            self._extra: dict[str, Any] = {}
            fn(**kwargs)
            record.update(self._extra)  # e.g. a commit's operations, a batch's oids
            record["status"] = getattr(self, "_last_status", 200)
        except HubError as e:
            record["status"] = e.status
            self._body()
            headers = {"X-Error-Message": e.message, **e.headers}
            if e.status == 429:
                headers.setdefault("Retry-After", "0")
            self._send_json({"error": e.message, **e.body}, status=e.status, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            record["status"] = -1
        finally:
            with self.state.lock:
                self.state.requests.append(record)

    def send_response(self, code: int, message: str | None = None) -> None:
        self._last_status = code
        super().send_response(code, message)

    # ------------------------------------------------------------------ routing

    def _route(self, method: str, path: str) -> tuple[str, Any, dict[str, Any]] | None:
        raw = path.split("/")[1:]  # keep %2F inside a segment: revisions like refs%2Fpr%2F1
        seg = [unquote(s) for s in raw]
        if method == "PUT" and len(seg) == 2 and seg[0] == "_lfs":
            return "lfs_upload", self.lfs_upload, {"oid": seg[1]}
        if seg[:2] == ["api", "whoami-v2"]:
            return "whoami", self.whoami, {}
        if seg[:2] == ["api", "validate-yaml"] and method == "POST":
            return "validate_yaml", self.validate_yaml, {}
        if seg[:3] == ["api", "repos", "create"] and method == "POST":
            return "create_repo", self.create_repo, {}
        if len(seg) >= 4 and seg[0] == "api" and seg[1] in REPO_TYPES:
            rtype, repo_id, rest = REPO_TYPES[seg[1]], f"{seg[2]}/{seg[3]}", seg[4:]
            kw = {"rtype": rtype, "repo_id": repo_id}
            if not rest and method == "GET":
                return "repo_info", self.repo_info, {**kw, "rev": "main"}
            if len(rest) >= 2 and rest[0] == "revision" and method == "GET":
                return "repo_info", self.repo_info, {**kw, "rev": "/".join(rest[1:])}
            if rest == ["refs"] and method == "GET":
                return "refs", self.refs, kw
            if len(rest) >= 2 and rest[0] == "tree" and method == "GET":
                return "tree", self.tree, {**kw, "rev": rest[1], "sub": "/".join(rest[2:])}
            if len(rest) == 2 and rest[0] == "paths-info" and method == "POST":
                return "paths_info", self.paths_info, {**kw, "rev": rest[1]}
            if len(rest) == 2 and rest[0] == "preupload" and method == "POST":
                return "preupload", self.preupload, {**kw, "rev": rest[1]}
            if len(rest) == 2 and rest[0] == "commit" and method == "POST":
                return "commit", self.commit, {**kw, "rev": rest[1]}
            if len(rest) == 2 and rest[0] == "tag" and method == "POST":
                return "tag", self.create_tag, {**kw, "rev": rest[1]}
            if len(rest) == 2 and rest[0] == "tag" and method == "DELETE":
                return "tag", self.delete_tag, {**kw, "tag": rest[1]}
            return None
        # /{prefix}{ns}/{name}.git/info/lfs/objects/{batch|verify}  and  /{prefix}{ns}/{name}/resolve/...
        rtype = "model"
        if seg and seg[0] in REPO_TYPES:
            rtype, seg, raw = REPO_TYPES[seg[0]], seg[1:], raw[1:]
        if len(seg) >= 6 and seg[1].endswith(".git") and seg[2:5] == ["info", "lfs", "objects"]:
            kw = {"rtype": rtype, "repo_id": f"{seg[0]}/{seg[1][:-4]}"}
            if seg[5] == "batch" and method == "POST":
                return "lfs_batch", self.lfs_batch, kw
            if seg[5] == "verify" and method == "POST":
                return "lfs_verify", self.lfs_verify, kw
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return "resolve", self.resolve, {"rtype": rtype, "repo_id": f"{seg[0]}/{seg[1]}",
                                             "rev": seg[3], "file": "/".join(seg[4:])}
        return None

    # ------------------------------------------------------------------ auth

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _check_auth(self, op: str, kwargs: dict[str, Any]) -> None:
        if op == "lfs_upload":
            return  # presigned URL: S3 never sees the Hub token
        token = self._token()
        st = self.state
        valid = {t for t in (st.token, st.read_token) if t}
        if token is not None and token not in valid:
            raise HubError(401, "Invalid credentials in Authorization header",
                           {"X-Error-Code": "InvalidCredentials"})
        writes = {"create_repo", "preupload", "lfs_batch", "lfs_verify", "commit", "tag"}
        if op in writes:
            if token is None:
                raise HubError(401, "You must be authenticated to access this resource")
            if token != st.token:
                raise HubError(403, "You don't have the rights to write to this repo: the token is read-only")
        elif op == "whoami" and token is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        repo_id = kwargs.get("repo_id")
        if repo_id:
            repo = st.repos.get((kwargs["rtype"], repo_id))
            if repo is not None and repo.private and token is None:
                # The Hub hides private repos: 401 + RepoNotFound, as for a missing repo.
                raise HubError(401, "Repository not found", {"X-Error-Code": "RepoNotFound"})

    # ------------------------------------------------------------------ helpers

    def _repo(self, rtype: str, repo_id: str) -> Repo:
        repo = self.state.repos.get((rtype, repo_id))
        if repo is None:
            raise HubError(404, "Repository not found", {"X-Error-Code": "RepoNotFound"})
        return repo

    def _commit(self, repo: Repo, rev: str) -> Commit:
        c = repo.resolve(unquote(rev))
        if c is None:
            raise HubError(404, f"Invalid rev id: {rev}", {"X-Error-Code": "RevisionNotFound"})
        return c

    def _entries(self, commit: Commit, sub: str, recursive: bool) -> list[dict[str, Any]]:
        prefix = f"{sub.strip('/')}/" if sub.strip("/") else ""
        files, dirs = [], set()
        for path, blob in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            parts = rest.split("/")
            for i in range(1, len(parts)):
                d = prefix + "/".join(parts[:i])
                if recursive or i == 1:
                    dirs.add(d)
            if recursive or len(parts) == 1:
                files.append(blob.entry(path))
        folders = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                   for d in sorted(dirs)]
        return folders + files
