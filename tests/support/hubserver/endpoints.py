"""The local Hub's API calls, one method each (see the package docstring for the list). A mixin
of Handler: it relies on Handler's plumbing (_json, _send, _send_json, _repo, _commit, _entries,
_check_auth, state, base)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any
from urllib.parse import parse_qs, unquote

from tests.support.hubserver.state import (
    GITATTRIBUTES,
    LFS_SUFFIXES,
    URL_PREFIX,
    Blob,
    HubError,
    Repo,
    _now,
    git_blob_oid,
)


class Endpoints:
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
