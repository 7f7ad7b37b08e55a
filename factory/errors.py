"""Errors a user can fix. The CLI prints their message (which says what to do) without a traceback."""


class UserError(Exception):
    pass
