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

from factory.common.retry import RetryPolicy
from factory.hub.client import DEFAULT_RETRY, REPO_TYPE, is_transient, parse_ref, scrub, with_retries
from factory.hub.errors import HubAuthError, HubConflictError, HubError, HubIntegrityError
from factory.hub.publish import PublishResult, publish_version
from factory.hub.download import pull
from factory.hub.versions import HubVersion, list_hub_versions, list_hub_versions_table
from factory.store.layout import CARD_NAME, MANIFEST_NAME, version_number

__all__ = ["CARD_NAME", "DEFAULT_RETRY", "MANIFEST_NAME", "REPO_TYPE", "HubAuthError", "HubConflictError", "HubError",
           "HubIntegrityError", "HubVersion", "PublishResult", "RetryPolicy", "is_transient", "list_hub_versions",
           "list_hub_versions_table", "parse_ref", "publish_version", "pull", "scrub", "version_number", "with_retries"]
