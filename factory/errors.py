"""Errors a user can fix. The CLI prints their message (which says what to do) without a traceback."""


class UserError(Exception):
    """exit_code: what the CLI exits with (2: fix something and run again)."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A config that cannot run; the message says what to change."""
