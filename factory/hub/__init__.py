"""Publishing versions to the Hugging Face Hub, and reading them back.

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
huggingface.co takes; only `HF_ENDPOINT` differs in tests. Transient failures (429, 5xx,
connection resets, timeouts) are retried with capped exponential backoff and full jitter; 401/403
stop at once with what to do. The token (HF_TOKEN or the saved login: huggingface_hub's lookup) is
never logged, never written, and scrubbed from every error message we raise.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from factory.common.files import sha256_bytes, sha256_file
from factory.common.retry import TRANSIENT_STATUS, RetryPolicy
from factory.common.retry import scrub as scrub_secrets
from factory.errors import UserError
from factory.store.layout import CARD_NAME, MANIFEST_NAME, version_number
from factory.store.manifest import VersionError, load_verified_manifest

if TYPE_CHECKING:  # huggingface_hub is imported lazily: `import factory` stays fast
    from huggingface_hub import HfApi

log = logging.getLogger(__name__)

REPO_TYPE = "dataset"
T = TypeVar("T")


# ----------------------------------------------------------------------------- errors


class HubError(UserError, RuntimeError):
    """A Hub operation that failed; the message is safe to print (no token inside)."""


class HubAuthError(HubError):
    """401/403, or no token at all: retrying cannot help, the user must fix credentials."""


class HubConflictError(HubError):
    """The repo holds something that contradicts this publish (same tag, other content; newer tag)."""


class HubIntegrityError(HubError):
    """A downloaded file does not match the manifest's sha256."""


DEFAULT_RETRY = RetryPolicy(tries=5, base=1.0, cap=20.0, jitter="full")


# ----------------------------------------------------------------------------- secrets


def _secrets(extra: Iterable[str | None] = ()) -> list[str]:
    from huggingface_hub import get_token

    return [s for s in (*extra, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN"),
                        get_token()) if s]


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every known token (given, HF_TOKEN, the saved login), `hf_...` token-like
    word and bearer value replaced by *** (factory.common.retry.scrub with the Hub's tokens)."""
    return scrub_secrets(text, _secrets(secrets))


# ----------------------------------------------------------------------------- retries


def _status(exc: BaseException) -> int | None:
    resp = getattr(exc, "response", None)
    code = getattr(resp, "status_code", None)
    return code if isinstance(code, int) else None


def is_transient(exc: BaseException) -> bool:
    """Known-transient only (habit 6): 408/429/5xx, resets, timeouts. Anything else is final."""
    status = _status(exc)
    if status is not None:
        return status in TRANSIENT_STATUS
    import httpx2

    if isinstance(exc, (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)):
        return True
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    # huggingface_hub wraps a failed LFS PUT in RuntimeError("Error while uploading ..."): judge the cause.
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_transient(cause)


def _namespace(repo_id: str) -> str:
    return repo_id.split("/", 1)[0] if "/" in repo_id else "your account"


def _auth_message(what: str, repo_id: str, status: int | None) -> str:
    org = _namespace(repo_id)
    why = {401: "the token was refused (HTTP 401: missing, invalid or expired)",
           403: f"the token has no write access to {org} (HTTP 403)"}.get(status or 0, "no token found")
    return (f"cannot {what} {repo_id}: {why}. Run `huggingface-cli login` (or `hf auth login`) with a "
            f"token that has write access to {org}, or set HF_TOKEN to such a token.")


def _translate(exc: BaseException, what: str, repo_id: str, secrets: Iterable[str | None]) -> HubError:
    """A final error as our own exception with a scrubbed, actionable message."""
    from huggingface_hub.errors import RepositoryNotFoundError

    status = _status(exc)
    text = scrub(f"{type(exc).__name__}: {exc}", secrets)
    if status in (401, 403) and not isinstance(exc, RepositoryNotFoundError):
        return HubAuthError(_auth_message(what, repo_id, status))
    if isinstance(exc, RepositoryNotFoundError):
        return HubError(f"cannot {what} {repo_id}: repository not found, or private and the token "
                        f"cannot read it (log in or set HF_TOKEN). [{text.splitlines()[0]}]")
    return HubError(f"cannot {what} {repo_id}: {text}")


def with_retries(fn: Callable[[], T], *, what: str, repo_id: str, policy: RetryPolicy = DEFAULT_RETRY,
                 secrets: Iterable[str | None] = (),
                 before_retry: Callable[[], T | None] | None = None) -> T:
    """Call `fn`; retry known-transient failures per `policy`; raise HubError (scrubbed) otherwise.

    `before_retry` may return a result to stop retrying: used when a request may have succeeded
    although its answer was lost (a commit or a tag), so a retry must not do it twice.
    """
    secrets = list(secrets)
    for attempt in range(policy.tries):
        try:
            return fn()
        except HubError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below; nothing is swallowed
            if not is_transient(exc) or attempt == policy.tries - 1:
                err = _translate(exc, what, repo_id, secrets)
                if is_transient(exc):
                    err = HubError(f"{err} (gave up after {policy.tries} tries)")
                raise err from None  # the original text may carry request details: not chained
            delay = policy.delay(attempt)
            log.warning("transient error during %s %s (try %d/%d): %s; retrying in %.1fs", what, repo_id,
                        attempt + 1, policy.tries, scrub(f"{type(exc).__name__}: {exc}", secrets).splitlines()[0],
                        delay)
            time.sleep(delay)
            if before_retry is not None:
                done = before_retry()
                if done is not None:
                    return done
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------- helpers


def _api(api: HfApi | None, token: str | None) -> HfApi:
    if api is not None:
        return api
    from huggingface_hub import HfApi

    return HfApi(token=token)


def _token_of(api: HfApi, token: str | None) -> str | None:
    from huggingface_hub import get_token

    return token or getattr(api, "token", None) or get_token()


def parse_ref(ref: str) -> tuple[str, str | None]:
    """"ORG/NAME@v2" -> ("ORG/NAME", "v2"); "ORG/NAME" -> ("ORG/NAME", None)."""
    repo_id, _, rev = ref.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise HubError(f"{ref!r} is not a Hub dataset id: expected ORG/NAME or ORG/NAME@vN")
    return repo_id, rev or None


def _remote_json(api: HfApi, repo_id: str, path: str, revision: str, token: str | None) -> tuple[dict[str, Any], bytes] | None:
    """(parsed, raw bytes) of a JSON file at `revision`, or None if the file is not there."""
    from huggingface_hub.errors import EntryNotFoundError

    try:
        local = api.hf_hub_download(repo_id, path, repo_type=REPO_TYPE, revision=revision, token=token)
    except EntryNotFoundError:
        return None
    raw = Path(local).read_bytes()
    return json.loads(raw), raw


# ----------------------------------------------------------------------------- publishing


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

    from factory.store.card import render_card

    version_dir = Path(version_dir)
    parse_ref(repo_id)
    manifest, manifest_raw = _local_version(version_dir)
    version = manifest["version"]
    api = _api(api, token)
    tok = _token_of(api, token)
    if not tok:
        raise HubAuthError(_auth_message("publish to", repo_id, None))
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
        remote = call(lambda: _remote_json(api, repo_id, MANIFEST_NAME, tags[version], token), "read the manifest of")
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
    remote_main = call(lambda: _remote_json(api, repo_id, MANIFEST_NAME, main, token), "read the manifest of") \
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
                got = _remote_json(api, repo_id, MANIFEST_NAME, head, token)
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


# ----------------------------------------------------------------------------- reading


@dataclass(slots=True)
class HubVersion:
    tag: str
    commit: str
    date: str | None
    rows: dict[str, int]
    teacher: str | None
    changes: str | None
    parent: str | None


def list_hub_versions(repo_id: str, token: str | None = None, api: HfApi | None = None, *,
                      retry: RetryPolicy = DEFAULT_RETRY) -> list[HubVersion]:
    """Every `vN` tag of the repo, oldest first, described from that tag's manifest.json."""
    api = _api(api, token)
    secrets = [_token_of(api, token)]

    def call(fn: Callable[[], T], what: str) -> T:
        return with_retries(fn, what=what, repo_id=repo_id, policy=retry, secrets=secrets)

    refs = call(lambda: api.list_repo_refs(repo_id, repo_type=REPO_TYPE, token=token), "read refs of")
    out: list[HubVersion] = []
    for ref in sorted((t for t in refs.tags if version_number(t.name)), key=lambda t: version_number(t.name)):
        got = call(lambda: _remote_json(api, repo_id, MANIFEST_NAME, ref.name, token), "read the manifest of")
        m = got[0] if got else {}
        changelog = m.get("changelog") or []
        out.append(HubVersion(
            tag=ref.name, commit=ref.target_commit, date=m.get("created_at"),
            rows={c: int(v.get("rows", 0)) for c, v in (m.get("configs") or {}).items()},
            teacher=(m.get("teacher") or {}).get("model"),
            changes=changelog[-1].get("message") if changelog else None, parent=m.get("parent")))
    return out


def pull(repo_id: str, revision: str | None, config: str | None = None, to: str | Path | None = None,
         token: str | None = None, api: HfApi | None = None, *, retry: RetryPolicy = DEFAULT_RETRY) -> Path:
    """Download exactly `revision` (a tag like "v2"; None = main): one config (or all), the manifest
    and the card; every downloaded data file is checked against the manifest's sha256."""
    api = _api(api, token)
    secrets = [_token_of(api, token)]
    revision = revision or "main"
    patterns = [MANIFEST_NAME, CARD_NAME, f"data/{config}/*" if config else "data/**"]
    local = with_retries(
        lambda: api.snapshot_download(repo_id, repo_type=REPO_TYPE, revision=revision, allow_patterns=patterns,
                                      local_dir=str(to) if to is not None else None, token=token),
        what=f"download {revision} of", repo_id=repo_id, policy=retry, secrets=secrets)
    root = Path(local)
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise HubIntegrityError(f"{repo_id}@{revision} has no {MANIFEST_NAME}: not a factory version")
    manifest = json.loads(manifest_path.read_text())
    entries = [e for e in manifest.get("files", []) if config is None or e.get("config") == config
               or e["path"].startswith(f"data/{config}/")]
    if config is not None and not entries:
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
