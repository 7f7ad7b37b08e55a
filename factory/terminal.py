"""The terminal belongs to factory: its progress, summary and errors. Everything else goes to a log.

vLLM, Ray, Triton, torch and Python's warnings write to file descriptors 1 and 2 from this process
and from the processes it starts (vLLM's engine core, the multiprocessing resource tracker), some
of them at exit, after factory is done. Python-level filters cannot reach those, so `quiet()`
works at the descriptor level: fds 1 and 2 are pointed at a log file (children inherit that),
and factory's own output is written to duplicates of the original terminal descriptors,
`stdout()` / `stderr()` here. Once the run's folder is known, `log_to(path)` moves the log there
and says where it is, once. The descriptors stay on the log until the process exits, so a normal
exit prints nothing from shutdown. Without `quiet()` (the Python API, `-v`) nothing is redirected
and `stdout()` / `stderr()` are sys.stdout / sys.stderr.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TextIO

_term_out: TextIO | None = None
_term_err: TextIO | None = None
_log_path: Path | None = None
LOG_NAME = "factory.log"


def stdout() -> TextIO:
    return _term_out or sys.stdout


def stderr() -> TextIO:
    return _term_err or sys.stderr


def log_path() -> Path | None:
    """Where third-party output goes now; None when it goes to the terminal."""
    return _log_path


def _terminal(fd: int, like: TextIO) -> TextIO:
    return open(os.dup(fd), "w", buffering=1, encoding=getattr(like, "encoding", None) or "utf-8",
                errors="replace", closefd=True)


class _FactoryOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == "factory" or record.name.startswith("factory.")


def quiet() -> None:
    """From now on fds 1 and 2 go to a holding log file; factory's output to the terminal."""
    global _term_out, _term_err, _log_path
    if _term_out is not None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    _term_out, _term_err = _terminal(1, sys.stdout), _terminal(2, sys.stderr)
    fd, name = tempfile.mkstemp(prefix="factory-", suffix=".log")
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    _log_path = Path(name)
    # factory's own warnings stay on the terminal (and in the log, through the root handler).
    handler = logging.StreamHandler(_term_err)
    handler.addFilter(_FactoryOnly())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    logging.getLogger().addHandler(handler)
    atexit.register(_drop_empty_holding_log)


def _drop_empty_holding_log() -> None:
    """A run that stopped before its folder existed (a config error) leaves no empty temp file."""
    if _log_path is not None and _log_path.parent == Path(tempfile.gettempdir()):
        try:
            if _log_path.stat().st_size == 0:
                _log_path.unlink()
        except OSError:
            pass


def log_to(path: Path) -> None:
    """Move the log to `path` (keeping what it holds so far) and say where it is, once."""
    global _log_path
    if _log_path is None or _log_path == path:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    with open(_log_path, "rb") as old, os.fdopen(os.dup(fd), "wb") as new:
        shutil.copyfileobj(old, new)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    _log_path.unlink(missing_ok=True)
    _log_path = path
    print(f"log: {path} (vLLM, Ray and other libraries write there; -v shows them here)", file=stderr(), flush=True)
