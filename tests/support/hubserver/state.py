"""The local Hub's state: repos in memory (each commit a full map path -> blob), branches and
tags pointing at commits, injected failures, and every request recorded."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

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
