"""A local stand-in for the part of the Hugging Face Hub HTTP API that `factory` uses.

The real `huggingface_hub` client and `datasets.load_dataset` talk to it over loopback
(`HF_ENDPOINT=http://127.0.0.1:PORT`), so publishing and downloading are tested at the protocol
level: the same requests a push to huggingface.co sends, only the host differs.

Covered (as huggingface_hub 2.4.0 sends them):
  POST /api/repos/create                                   create_repo (409 when it exists)
  GET  /api/{type}s/{ns}/{name}[/revision/{rev}]           repo_info / dataset_info
  GET  /api/{type}s/{ns}/{name}/refs                       list_repo_refs
  GET  /api/{type}s/{ns}/{name}/tree/{rev}[/{path}]        list_repo_tree / list_repo_files / HfFileSystem
  POST /api/{type}s/{ns}/{name}/paths-info/{rev}           get_paths_info / HfFileSystem
  POST /api/validate-yaml                                  create_commit's README check
  POST /api/{type}s/{ns}/{name}/preupload/{rev}            upload modes (regular / lfs) + remote oids
  POST /{prefix}{ns}/{name}.git/info/lfs/objects/batch     LFS batch (basic transfer)
  PUT  /_lfs/{oid}                                         the "presigned" upload URL (no auth, like S3)
  POST /{prefix}{ns}/{name}.git/info/lfs/objects/verify    LFS verify
  POST /api/{type}s/{ns}/{name}/commit/{rev}               NDJSON commit (file, lfsFile, deletedFile, deletedFolder)
  POST /api/{type}s/{ns}/{name}/tag/{rev}, DELETE .../tag/{tag}   create_tag / delete_tag
  GET|HEAD /{prefix}{ns}/{name}/resolve/{rev}/{path}       hf_hub_download (ETag, X-Repo-Commit, Range)
  GET  /api/whoami-v2

Xet is not spoken: clients must run with HF_HUB_DISABLE_XET=1 (the LFS batch answer never offers
the xet transfer, and resolve answers carry no X-Xet-* headers, so downloads use plain HTTP too).

Repos live in memory: each commit is a full map path -> blob, branches and tags point at commits.
Auth: a request with a wrong bearer token gets 401; writes need the write token (a read token gets
403); reads of a private repo need a valid token. Failures can be injected per operation
(`fail("commit", status=500, times=1)`) and every request is recorded in `requests`.

Run standalone: `python tests/support/hubserver.py --port 8765 --token hf_xxx`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors", ".gz", ".zip", ".zst", ".npy")
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.arrow filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True, slots=True)
class Blob:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def oid(self) -> str:
        # What the Hub reports as a file's git oid: the blob itself, or for LFS the pointer file.
        if not self.lfs:
            return git_blob_oid(self.data)
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n"
        return git_blob_oid(pointer.encode())

    def entry(self, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "file", "oid": self.oid, "size": len(self.data), "path": path}
        if self.lfs:
            out["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": 134}
        return out


@dataclass(slots=True)
class Commit:
    oid: str
    files: dict[str, Blob]
    parent: str | None
    title: str
    date: str


@dataclass(slots=True)
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, rev: str) -> Commit | None:
        oid = self.branches.get(rev) or self.tags.get(rev)
        if oid is None and re.fullmatch(r"[0-9a-f]{7,40}", rev):
            matches = [c for c in self.commits if c.startswith(rev)]
            oid = matches[0] if len(matches) == 1 else None
        return self.commits.get(oid) if oid else None


@dataclass(slots=True)
class Failure:
    op: str
    status: int
    times: int | None  # None = every time
    after: int  # let this many calls of `op` through first
    seen: int = 0
    fired: int = 0
    message: str = "injected failure"


class HubState:
    """Everything the server knows; tests read it directly (same process)."""

    def __init__(self, token: str | None, read_token: str | None = None, user: str = "tester",
                 orgs: tuple[str, ...] = ("org",)) -> None:
        self.token = token
        self.read_token = read_token
        self.user = user
        self.orgs = orgs
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}  # sha256 -> content (shared storage, like the Hub's)
        self.failures: list[Failure] = []
        self.requests: list[dict[str, Any]] = []  # {"method", "path", "op", "status"}
        self.lock = threading.RLock()
        self._counter = 0

    # ------------------------------------------------------------------ test controls

    def fail(self, op: str, status: int = 500, times: int | None = 1, after: int = 0,
             message: str = "injected failure") -> Failure:
        """Answer the (after+1)-th .. call of `op` with `status`, `times` times (None: forever).

        ops: create_repo, repo_info, refs, tree, paths_info, validate_yaml, preupload, lfs_batch,
        lfs_upload, lfs_verify, commit, tag, resolve. status 0 closes the connection without an answer.
        """
        f = Failure(op=op, status=status, times=times, after=after, message=message)
        with self.lock:
            self.failures.append(f)
        return f

    def clear_failures(self) -> None:
        with self.lock:
            self.failures.clear()

    def calls(self, op: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["op"] == op]

    def uploaded_oids(self) -> list[str]:
        """sha256 of every LFS object whose bytes were PUT (successfully), in order."""
        return [r["oid"] for r in self.requests if r["op"] == "lfs_upload" and r["status"] == 200]

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    # ------------------------------------------------------------------ internals

    def _injected(self, op: str) -> Failure | None:
        with self.lock:
            for f in self.failures:
                if f.op != op:
                    continue
                f.seen += 1
                if f.seen > f.after and (f.times is None or f.fired < f.times):
                    f.fired += 1
                    return f
        return None

    def new_commit(self, repo: Repo, files: dict[str, Blob], parent: str | None, title: str) -> Commit:
        with self.lock:
            self._counter += 1
            seed = json.dumps([repo.repo_id, parent, title, self._counter,
                               sorted((p, b.oid) for p, b in files.items())])
        oid = hashlib.sha1(seed.encode()).hexdigest()
        c = Commit(oid=oid, files=dict(files), parent=parent, title=title, date=_now())
        repo.commits[oid] = c
        return c


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HubError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.body = body or {}


class Handler(BaseHTTPRequestHandler):
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

    # ------------------------------------------------------------------ endpoints

    def whoami(self) -> None:
        role = "write" if self._token() == self.state.token else "read"
        self._send_json({"type": "user", "name": self.state.user,
                         "orgs": [{"name": o, "type": "org"} for o in self.state.orgs],
                         "auth": {"type": "access_token", "accessToken": {"role": role}}})

    def validate_yaml(self) -> None:
        import yaml

        content = self._json().get("content", "")
        m = re.match(r"^---\n(.*?)\n---", content, re.S)
        if m:
            try:
                yaml.safe_load(m.group(1))
            except yaml.YAMLError as e:
                self._send_json({"errors": [{"message": str(e)}], "warnings": []}, status=400)
                return
        self._send_json({"errors": [], "warnings": []})

    def create_repo(self) -> None:
        p = self._json()
        rtype = p.get("type") or "model"
        ns = p.get("organization") or self.state.user
        if ns not in (self.state.user, *self.state.orgs):
            raise HubError(403, f"You don't have the rights to create a repo under the namespace {ns}")
        repo_id = f"{ns}/{p['name']}"
        url = f"{self.base}/{URL_PREFIX[rtype]}{repo_id}"
        with self.state.lock:
            if (rtype, repo_id) in self.state.repos:
                # Like the Hub, the 409 names the repo's url: create_repo(exist_ok=True) reads it.
                raise HubError(409, "You already created this repo", {"X-Error-Code": "RepoAlreadyExists"},
                               {"url": url})
            private = p.get("visibility") == "private" or bool(p.get("private"))
            repo = Repo(repo_type=rtype, repo_id=repo_id, private=private, created_at=_now())
            # The Hub starts every repo with one commit holding .gitattributes.
            c = self.state.new_commit(repo, {".gitattributes": Blob(GITATTRIBUTES, False)}, None, "initial commit")
            repo.branches["main"] = c.oid
            self.state.repos[(rtype, repo_id)] = repo
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def repo_info(self, rtype: str, repo_id: str, rev: str) -> None:
        repo = self._repo(rtype, repo_id)
        c = self._commit(repo, rev)
        card = c.files.get("README.md")
        card_data = None
        if card is not None:
            m = re.match(r"^---\n(.*?)\n---", card.data.decode("utf-8", "replace"), re.S)
            if m:
                import yaml

                card_data = yaml.safe_load(m.group(1))
        self._send_json({
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id,
            "author": repo_id.split("/")[0], "sha": c.oid, "private": repo.private, "gated": False,
            "disabled": False, "downloads": 0, "likes": 0, "tags": [], "createdAt": repo.created_at,
            "lastModified": c.date, "cardData": card_data,
            "siblings": [{"rfilename": p} for p in sorted(c.files)],
        })

    def refs(self, rtype: str, repo_id: str) -> None:
        repo = self._repo(rtype, repo_id)

        def ref(kind: str, name: str, oid: str) -> dict[str, str]:
            return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": oid}

        self._send_json({
            "branches": [ref("heads", n, o) for n, o in sorted(repo.branches.items())],
            "tags": [ref("tags", n, o) for n, o in sorted(repo.tags.items())],
            "converts": [], "pullRequests": [],
        })

    def tree(self, rtype: str, repo_id: str, rev: str, sub: str) -> None:
        repo = self._repo(rtype, repo_id)
        c = self._commit(repo, rev)
        recursive = (self._query.get("recursive") or ["false"])[0].lower() in ("1", "true")
        if sub and not any(p == sub or p.startswith(sub.rstrip("/") + "/") for p in c.files):
            raise HubError(404, f"{sub} does not exist at {rev}", {"X-Error-Code": "EntryNotFound"})
        self._send_json(self._entries(c, sub, recursive))

    def paths_info(self, rtype: str, repo_id: str, rev: str) -> None:
        repo = self._repo(rtype, repo_id)
        c = self._commit(repo, rev)
        body = self._body()
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            paths = json.loads(body).get("paths", [])
        else:
            paths = parse_qs(body.decode(), keep_blank_values=True).get("paths", [])
        out: list[dict[str, Any]] = []
        for p in paths:
            p = p.strip("/")
            if p in c.files:
                out.append(c.files[p].entry(p))
            elif any(f.startswith(p + "/") for f in c.files) or p == "":
                out.append({"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0, "path": p})
        self._send_json(out)

    def preupload(self, rtype: str, repo_id: str, rev: str) -> None:
        repo = self._repo(rtype, repo_id)
        c = self._commit(repo, rev)
        files = []
        for f in self._json().get("files", []):
            sample = base64.b64decode(f.get("sample", ""))
            lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] >= 10 * 1024 * 1024 or b"\0" in sample
            existing = c.files.get(f["path"])
            oid = None
            if existing is not None:
                oid = existing.sha256 if existing.lfs else git_blob_oid(existing.data)
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular",
                          "shouldIgnore": False, "oid": oid})
        self._send_json({"files": files, "commitOid": c.oid})

    def lfs_batch(self, rtype: str, repo_id: str) -> None:
        self._repo(rtype, repo_id)
        p = self._json()
        if p.get("operation") != "upload":
            raise HubError(400, "only the upload operation is supported here")
        prefix = URL_PREFIX[rtype]
        objects = []
        self._extra["oids"] = [o["oid"] for o in p.get("objects", [])]
        for o in p.get("objects", []):
            item: dict[str, Any] = {"oid": o["oid"], "size": o["size"], "authenticated": True}
            if o["oid"] not in self.state.lfs:
                item["actions"] = {
                    "upload": {"href": f"{self.base}/_lfs/{o['oid']}", "expires_in": 3600},
                    "verify": {"href": f"{self.base}/{prefix}{repo_id}.git/info/lfs/objects/verify",
                               "header": {}},
                }
            objects.append(item)
        self._send_json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                        headers={"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_upload(self, oid: str) -> None:
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, "uploaded content does not match the object id")
        with self.state.lock:
            self.state.lfs[oid] = data
        self._send(200, b"", {"ETag": f'"{oid[:32]}"'}, content_type="text/plain")

    def lfs_verify(self, rtype: str, repo_id: str) -> None:
        p = self._json()
        data = self.state.lfs.get(p.get("oid", ""))
        if data is None or len(data) != p.get("size"):
            raise HubError(404, f"object {p.get('oid')} not found")
        self._send_json({"success": True})

    def commit(self, rtype: str, repo_id: str, rev: str) -> None:
        repo = self._repo(rtype, repo_id)
        branch = unquote(rev)
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        header = next((x["value"] for x in lines if x["key"] == "header"), {})
        self._extra["ops"] = [(x["key"], x["value"]["path"]) for x in lines if x["key"] != "header"]
        with self.state.lock:
            if branch not in repo.branches:
                raise HubError(404, f"Invalid rev id: {branch} is not a branch", {"X-Error-Code": "RevisionNotFound"})
            head = repo.commits[repo.branches[branch]]
            parent = header.get("parentCommit")
            if parent and not head.oid.startswith(parent):
                raise HubError(412, f"A commit has happened since. Parent {parent} is not the head of {branch}")
            files = dict(head.files)
            for item in lines:
                key, v = item["key"], item["value"]
                if key == "file":
                    files[v["path"]] = Blob(base64.b64decode(v["content"]), False)
                elif key == "lfsFile":
                    data = self.state.lfs.get(v["oid"])
                    if data is None:
                        raise HubError(422, f"LFS object {v['oid']} of {v['path']} was never uploaded")
                    files[v["path"]] = Blob(data, True)
                elif key == "deletedFile":
                    if v["path"] not in files:
                        raise HubError(404, f"A file with this name doesn't exist: {v['path']}",
                                       {"X-Error-Code": "EntryNotFound"})
                    del files[v["path"]]
                elif key == "deletedFolder":
                    prefix = v["path"].rstrip("/") + "/"
                    for p in [p for p in files if p.startswith(prefix)]:
                        del files[p]
                elif key != "header":
                    raise HubError(400, f"unknown commit operation {key}")
            c = self.state.new_commit(repo, files, head.oid, header.get("summary", ""))
            repo.branches[branch] = c.oid
        url = f"{self.base}/{URL_PREFIX[rtype]}{repo_id}/commit/{c.oid}"
        self._send_json({"success": True, "commitOid": c.oid, "commitUrl": url, "pullRequestUrl": None})

    def create_tag(self, rtype: str, repo_id: str, rev: str) -> None:
        repo = self._repo(rtype, repo_id)
        c = self._commit(repo, rev)
        tag = self._json().get("tag")
        if not tag:
            raise HubError(400, "tag name missing")
        with self.state.lock:
            if tag in repo.tags or tag in repo.branches:
                raise HubError(409, f"Tag {tag} already exists", {"X-Error-Code": "TagAlreadyExists"})
            repo.tags[tag] = c.oid
        self._send_json({})

    def delete_tag(self, rtype: str, repo_id: str, tag: str) -> None:
        repo = self._repo(rtype, repo_id)
        with self.state.lock:
            if repo.tags.pop(unquote(tag), None) is None:
                raise HubError(404, f"Tag {tag} does not exist", {"X-Error-Code": "RevisionNotFound"})
        self._send_json({})

    def resolve(self, rtype: str, repo_id: str, rev: str, file: str) -> None:
        repo = self._repo(rtype, repo_id)
        c = self._commit(repo, rev)
        blob = c.files.get(file)
        if blob is None:
            raise HubError(404, "Entry not found", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": c.oid})
        etag = blob.sha256 if blob.lfs else blob.oid
        headers = {"ETag": f'"{etag}"', "X-Repo-Commit": c.oid, "Accept-Ranges": "bytes"}
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(blob.data))})
        data = blob.data
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng or "")
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else len(data) - 1
            else:  # suffix range: the last N bytes
                start, end = max(0, len(data) - int(m.group(2))), len(data) - 1
            end = min(end, len(data) - 1)
            if start >= len(data):
                raise HubError(416, "range not satisfiable", {"Content-Range": f"bytes */{len(data)}"})
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._send(206, data[start:end + 1], headers, content_type="application/octet-stream")
            return
        self._send(200, data, headers, content_type="application/octet-stream")


class HubServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: HubState, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), Handler)
        self.state = state
        self.url = f"http://{host}:{self.server_address[1]}"


class LocalHub:
    """`with LocalHub(token=...) as hub:` runs the server in a daemon thread; `hub.url`, `hub.state`."""

    def __init__(self, token: str | None = "hf_test_write_token", read_token: str | None = None,
                 port: int = 0) -> None:
        self.state = HubState(token=token, read_token=read_token)
        self.server = HubServer(self.state, port=port)
        self.url = self.server.url
        self._thread = threading.Thread(target=self.server.serve_forever, name="local-hub", daemon=True)

    def __enter__(self) -> "LocalHub":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self, hf_home: str, token: str | None = None) -> dict[str, str]:
        """Environment for a client process that must talk to this server only."""
        env = {"HF_ENDPOINT": self.url, "HF_HOME": hf_home, "HF_HUB_DISABLE_XET": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "HF_DATASETS_CACHE": f"{hf_home}/datasets", "HF_HUB_ETAG_TIMEOUT": "10"}
        if token is not None:
            env["HF_TOKEN"] = token
        return env

    def __getattr__(self, name: str) -> Any:
        return getattr(self.state, name)  # hub.fail(...), hub.calls(...), hub.repo(...)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--token", default="hf_test_write_token")
    args = ap.parse_args()
    hub = LocalHub(token=args.token, port=args.port)
    print(f"local hub on {hub.url} (HF_ENDPOINT={hub.url} HF_HUB_DISABLE_XET=1)", flush=True)
    try:
        hub.server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
