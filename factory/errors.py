"""Errors a user can fix. The CLI prints their message (which says what to do) without a traceback."""


class UserError(Exception):
    pass


class ConfigError(UserError, ValueError):
    """A config that cannot run; the message says what to change."""
