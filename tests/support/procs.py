"""Finding processes by the names Ray and vLLM give them, for tests that kill or count them."""

from __future__ import annotations

from pathlib import Path


def alive(pid: int) -> bool:
    """Running (a zombie is dead: it only waits to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pids_named(title: str) -> list[int]:
    """Pids whose command line starts with `title` (Ray and vLLM name their processes so)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().startswith(title.encode()):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids
