"""Publishing versions to the Hugging Face Hub, and reading them back.

publish.py (one commit + tag per version; its docstring has the rules), download.py (`pull` a
version and check it against its manifest), versions.py (list the tags), client.py (the HfApi
calls, retries with backoff and jitter, token scrubbing), errors.py.
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
