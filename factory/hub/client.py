"""Talking to the Hub: the HfApi, the token, and retries.

Transient failures (429, 5xx, connection resets, timeouts) are retried with capped exponential
backoff and full jitter (factory.common.retry.RetryPolicy); 401/403 stop at once with what to do.
The token (HF_TOKEN or the saved login: huggingface_hub's lookup) is never logged, never written,
and scrubbed from every error message we raise (factory.common.retry.scrub).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from factory.common.retry import TRANSIENT_STATUS, RetryPolicy
from factory.common.retry import scrub as scrub_secrets
from factory.hub.errors import HubAuthError, HubError

if TYPE_CHECKING:  # huggingface_hub is imported lazily: `import factory` stays fast
    from huggingface_hub import HfApi

log = logging.getLogger(__name__)

REPO_TYPE = "dataset"
T = TypeVar("T")
DEFAULT_RETRY = RetryPolicy(tries=5, base=1.0, cap=20.0, jitter="full")

__all__ = ["DEFAULT_RETRY", "REPO_TYPE", "auth_message", "is_transient", "open_api", "parse_ref",
           "remote_json", "scrub", "token_of", "with_retries"]


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


def http_status(exc: BaseException) -> int | None:
    resp = getattr(exc, "response", None)
    code = getattr(resp, "status_code", None)
    return code if isinstance(code, int) else None


def is_transient(exc: BaseException) -> bool:
    """Known-transient only (habit 6): 408/429/5xx, resets, timeouts. Anything else is final."""
    status = http_status(exc)
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


def auth_message(what: str, repo_id: str, status: int | None) -> str:
    org = _namespace(repo_id)
    why = {401: "the token was refused (HTTP 401: missing, invalid or expired)",
           403: f"the token has no write access to {org} (HTTP 403)"}.get(status or 0, "no token found")
    return (f"cannot {what} {repo_id}: {why}. Run `huggingface-cli login` (or `hf auth login`) with a "
            f"token that has write access to {org}, or set HF_TOKEN to such a token.")


def translate(exc: BaseException, what: str, repo_id: str, secrets: Iterable[str | None]) -> HubError:
    """A final error as our own exception with a scrubbed, actionable message."""
    from huggingface_hub.errors import RepositoryNotFoundError

    status = http_status(exc)
    text = scrub(f"{type(exc).__name__}: {exc}", secrets)
    if status in (401, 403) and not isinstance(exc, RepositoryNotFoundError):
        return HubAuthError(auth_message(what, repo_id, status))
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
                err = translate(exc, what, repo_id, secrets)
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


# ----------------------------------------------------------------------------- the API


def open_api(api: HfApi | None, token: str | None) -> HfApi:
    if api is not None:
        return api
    from huggingface_hub import HfApi

    return HfApi(token=token)


def token_of(api: HfApi, token: str | None) -> str | None:
    from huggingface_hub import get_token

    return token or getattr(api, "token", None) or get_token()


def parse_ref(ref: str) -> tuple[str, str | None]:
    """"ORG/NAME@v2" -> ("ORG/NAME", "v2"); "ORG/NAME" -> ("ORG/NAME", None)."""
    repo_id, _, rev = ref.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise HubError(f"{ref!r} is not a Hub dataset id: expected ORG/NAME or ORG/NAME@vN")
    return repo_id, rev or None


def remote_json(api: HfApi, repo_id: str, path: str, revision: str, token: str | None) -> tuple[dict[str, Any], bytes] | None:
    """(parsed, raw bytes) of a JSON file at `revision`, or None if the file is not there."""
    from huggingface_hub.errors import EntryNotFoundError

    try:
        local = api.hf_hub_download(repo_id, path, repo_type=REPO_TYPE, revision=revision, token=token)
    except EntryNotFoundError:
        return None
    raw = Path(local).read_bytes()
    return json.loads(raw), raw
