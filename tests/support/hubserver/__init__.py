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

Modules: state (repos, commits, blobs, injected failures), handler (HTTP plumbing, routing,
auth), endpoints (one method per API call above); this file starts and stops the server.

Run standalone: `python -m tests.support.hubserver --port 8765 --token hf_xxx`.
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Any

from tests.support.hubserver.handler import Handler
from tests.support.hubserver.state import GITATTRIBUTES, Blob, Commit, HubError, HubState, Repo, git_blob_oid

__all__ = ["GITATTRIBUTES", "Blob", "Commit", "HubError", "HubServer", "HubState", "LocalHub", "Repo", "git_blob_oid"]


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
