"""What can go wrong talking to the Hub; every message is safe to print (no token inside)."""

from __future__ import annotations

from factory.errors import UserError


class HubError(UserError, RuntimeError):
    """A Hub operation that failed; the message is safe to print (no token inside)."""


class HubAuthError(HubError):
    """401/403, or no token at all: retrying cannot help, the user must fix credentials."""


class HubConflictError(HubError):
    """The repo holds something that contradicts this publish (same tag, other content; newer tag)."""


class HubIntegrityError(HubError):
    """A downloaded file does not match the manifest's sha256."""
