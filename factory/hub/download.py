"""Downloading exactly one published version (a tag), every data file checked against the manifest."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from factory.common.files import sha256_file
from factory.common.retry import RetryPolicy
from factory.hub.client import DEFAULT_RETRY, REPO_TYPE, open_api, token_of, with_retries
from factory.hub.errors import HubError, HubIntegrityError
from factory.store.layout import CARD_NAME, MANIFEST_NAME, PLOT_DIR, REPORT_NAME

if TYPE_CHECKING:
    from huggingface_hub import HfApi

log = logging.getLogger(__name__)


def pull(repo_id: str, revision: str | None, config: str | None = None, to: str | Path | None = None,
         token: str | None = None, api: HfApi | None = None, *, retry: RetryPolicy = DEFAULT_RETRY) -> Path:
    """Download exactly `revision` (a tag like "v2"; None = main): one config (or all), the manifest
    and the card; every downloaded data file is checked against the manifest's sha256."""
    api = open_api(api, token)
    secrets = [token_of(api, token)]
    revision = revision or "main"
    # The report (plots the card embeds, report.html) comes with any config: it is small.
    patterns = [MANIFEST_NAME, CARD_NAME, REPORT_NAME, f"{PLOT_DIR}/*", f"data/{config}/*" if config else "data/**"]
    local = with_retries(
        lambda: api.snapshot_download(repo_id, repo_type=REPO_TYPE, revision=revision, allow_patterns=patterns,
                                      local_dir=str(to) if to is not None else None, token=token),
        what=f"download {revision} of", repo_id=repo_id, policy=retry, secrets=secrets)
    root = Path(local)
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise HubIntegrityError(f"{repo_id}@{revision} has no {MANIFEST_NAME}: not a factory version")
    manifest = json.loads(manifest_path.read_text())
    entries = [e for e in manifest.get("files", []) if config is None or e.get("config") in (config, None)
               or e["path"].startswith(f"data/{config}/")]
    if config is not None and not any(e.get("config") == config or e["path"].startswith(f"data/{config}/")
                                      for e in entries):
        configs = sorted(manifest.get("configs") or {})
        raise HubError(f"{repo_id}@{revision} has no config {config!r}; configs are {configs}")
    for e in entries:
        path = root / e["path"]
        if not path.is_file():
            raise HubIntegrityError(f"{e['path']} is listed in the manifest of {repo_id}@{revision} but was not downloaded")
        if sha256_file(path) != e["sha256"]:
            raise HubIntegrityError(f"{e['path']} of {repo_id}@{revision}: sha256 differs from the manifest "
                                    "(corrupt download or tampered file)")
    log.info("pulled %s@%s (%d file(s) checked) to %s", repo_id, revision, len(entries), root)
    return root
