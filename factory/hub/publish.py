"""Publishing a local version to the Hugging Face Hub.

A local version `vN` becomes ONE commit on `main` plus a tag `vN` on that commit:
  - the commit carries the Parquet files of `default` and `all`, README.md re-rendered with the
    repo id (so its load line is right) and manifest.json; files of the previous version that the
    new one no longer has are deleted in the same commit, so `main` always shows the newest version;
  - files whose sha256 equals what `main` already holds (read from the remote manifest) are not
    sent again: the new commit keeps them;
  - the tag is created only after the commit succeeded: a failure anywhere before leaves no tag,
    and the older tags (older versions) are never touched;
  - publishing a version whose tag exists with the same manifest is a no-op ("already published");
    with a different manifest it is an error (versions are immutable).

Everything goes through `huggingface_hub.HfApi`, so the code path is the one a push to
huggingface.co takes; only `HF_ENDPOINT` differs in tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from factory.common.files import sha256_bytes
from factory.common.retry import RetryPolicy
from factory.hub.client import (
    DEFAULT_RETRY,
    REPO_TYPE,
    auth_message,
    open_api,
    parse_ref,
    remote_json,
    token_of,
    with_retries,
)
from factory.hub.errors import HubAuthError, HubConflictError, HubError
from factory.store.card import render_card
from factory.store.layout import CARD_NAME, MANIFEST_NAME, version_number
from factory.store.manifest import VersionError, load_verified_manifest

if TYPE_CHECKING:
    from huggingface_hub import HfApi

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class PublishResult:
    repo_id: str
    version: str
    tag: str
    commit: str | None
    url: str
    uploaded: list[str] = field(default_factory=list)  # files added by this commit (sent or changed)
    reused: list[str] = field(default_factory=list)  # data files kept from main, not sent again
    deleted: list[str] = field(default_factory=list)  # files of the previous version removed from main
    already_published: bool = False

    @property
    def message(self) -> str:
        if self.already_published:
            return f"{self.version} already published to {self.repo_id} (tag {self.tag} -> {(self.commit or '')[:8]})"
        return (f"published {self.version} to {self.repo_id}: commit {(self.commit or '')[:8]}, tag {self.tag}; "
                f"{len(self.uploaded)} file(s) added, {len(self.reused)} unchanged kept, "
                f"{len(self.deleted)} removed")


def _local_version(version_dir: Path) -> tuple[dict[str, Any], bytes]:
    try:
        manifest = load_verified_manifest(version_dir, "refusing to publish: version")
    except VersionError as e:
        raise HubError(str(e)) from None
    if version_number(str(manifest.get("version"))) is None:
        raise HubError(f"{version_dir}/{MANIFEST_NAME} has no version like 'v3' (got {manifest.get('version')!r})")
    return manifest, (version_dir / MANIFEST_NAME).read_bytes()


def publish_version(version_dir: str | Path, repo_id: str, private: bool = False, token: str | None = None,
                    api: HfApi | None = None, *, retry: RetryPolicy = DEFAULT_RETRY) -> PublishResult:
    """Push one local version as one commit on `main` plus the tag `vN`. See the module docstring."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    version_dir = Path(version_dir)
    parse_ref(repo_id)
    manifest, manifest_raw = _local_version(version_dir)
    version = manifest["version"]
    api = open_api(api, token)
    tok = token_of(api, token)
    if not tok:
        raise HubAuthError(auth_message("publish to", repo_id, None))
    secrets = [tok]

    def call(fn: Callable[[], T], what: str, before_retry: Callable[[], T | None] | None = None) -> T:
        return with_retries(fn, what=what, repo_id=repo_id, policy=retry, secrets=secrets,
                            before_retry=before_retry)

    url = str(call(lambda: api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True,
                                           token=token), "create"))
    refs = call(lambda: api.list_repo_refs(repo_id, repo_type=REPO_TYPE, token=token), "read refs of")
    tags = {t.name: t.target_commit for t in refs.tags}
    main = next((b.target_commit for b in refs.branches if b.name == "main"), None)

    # Idempotence: the tag exists -> same manifest means done, another manifest means conflict.
    if version in tags:
        remote = call(lambda: remote_json(api, repo_id, MANIFEST_NAME, tags[version], token), "read the manifest of")
        if remote is not None and sha256_bytes(remote[1]) == sha256_bytes(manifest_raw):
            log.info("%s already published to %s", version, repo_id)
            return PublishResult(repo_id, version, version, tags[version], url, already_published=True)
        raise HubConflictError(
            f"{repo_id} already has a tag {version} whose manifest differs from {version_dir}/{MANIFEST_NAME}: "
            "published versions are immutable. Publish to another repo, or build a new local version.")
    newer = sorted((t for t in tags if (n := version_number(t)) and n > version_number(version)), key=version_number)
    if newer:
        raise HubConflictError(f"{repo_id} already has {newer[-1]}, newer than {version}: `main` must show the "
                               "newest version, so versions are published in order")

    # What main holds now: its manifest says which data files (and hashes) it has.
    remote_main = call(lambda: remote_json(api, repo_id, MANIFEST_NAME, main, token), "read the manifest of") \
        if main else None
    remote_files = {f["path"]: f["sha256"] for f in (remote_main[0].get("files", []) if remote_main else [])}
    present = set(call(lambda: api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=main, token=token),
                       "list files of")) if main else set()

    if remote_main is not None and sha256_bytes(remote_main[1]) == sha256_bytes(manifest_raw):
        # An earlier run committed this version but died before tagging: tag that commit.
        commit_oid, uploaded, reused, deleted = main, [], sorted(remote_files), []
    else:
        ops: list[Any] = []
        uploaded, reused = [], []
        for entry in manifest["files"]:
            rel = entry["path"]
            if remote_files.get(rel) == entry["sha256"] and rel in present:
                reused.append(rel)
            else:
                ops.append(CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(version_dir / rel)))
                uploaded.append(rel)
        new_paths = {e["path"] for e in manifest["files"]}
        # Delete what the previous version had and this one has not: listed in the old manifest, or
        # any data file (nothing stale under data/ may reach load_dataset's glob).
        deleted = sorted(p for p in present if p not in new_paths and (p in remote_files or p.startswith("data/")))
        ops += [CommitOperationDelete(path_in_repo=p) for p in deleted]
        ops.append(CommitOperationAdd(path_in_repo=CARD_NAME,
                                      path_or_fileobj=render_card(manifest, repo_id=repo_id).encode("utf-8")))
        ops.append(CommitOperationAdd(path_in_repo=MANIFEST_NAME, path_or_fileobj=manifest_raw))
        uploaded += [CARD_NAME, MANIFEST_NAME]
        message = f"{version}: " + str((manifest.get("changelog") or [{}])[-1].get("message") or "new version")
        log.info("publishing %s to %s: %d file(s) to add, %d unchanged, %d to delete", version, repo_id,
                 len(uploaded), len(reused), len(deleted))

        def landed() -> str | None:
            # The commit request may have succeeded with its answer lost: then main holds our manifest.
            try:
                head = next(b.target_commit for b in api.list_repo_refs(repo_id, repo_type=REPO_TYPE,
                                                                        token=token).branches if b.name == "main")
                got = remote_json(api, repo_id, MANIFEST_NAME, head, token)
            except Exception:  # noqa: BLE001 - unknown: let the retry find out
                return None
            return head if got is not None and got[1] == manifest_raw else None

        # parent_commit: if someone else moved main meanwhile the Hub refuses (412) instead of our
        # commit silently building on files we did not diff against.
        info = call(lambda: api.create_commit(repo_id, ops, commit_message=message,
                                              commit_description=_describe(manifest), repo_type=REPO_TYPE,
                                              token=token, parent_commit=main),
                    "commit to", before_retry=landed)
        commit_oid = info.oid if hasattr(info, "oid") else str(info)  # CommitInfo, or landed()'s sha

    def tagged() -> str | None:
        try:
            got = {t.name: t.target_commit for t in api.list_repo_refs(repo_id, repo_type=REPO_TYPE, token=token).tags}
        except Exception:  # noqa: BLE001
            return None
        return "ok" if got.get(version) == commit_oid else None

    call(lambda: api.create_tag(repo_id, tag=version, revision=commit_oid, repo_type=REPO_TYPE, token=token,
                                tag_message=f"factory {version}"), "tag", before_retry=tagged)
    result = PublishResult(repo_id, version, version, commit_oid, url, uploaded, reused, deleted)
    log.info("%s", result.message)
    return result


def _describe(manifest: dict[str, Any]) -> str:
    rows = {c: v.get("rows") for c, v in (manifest.get("configs") or {}).items()}
    lines = [f"factory version {manifest.get('version')} (parent: {manifest.get('parent') or '-'})",
             f"rows: {rows}", f"teacher: {(manifest.get('teacher') or {}).get('model') or '-'}"]
    lines += [f"- {c.get('version')}: {c.get('message')}" for c in manifest.get("changelog") or []]
    return "\n".join(lines)
