"""Seeds from stable hashes: every worker, replica and resumed run agrees on them.

Never Python's hash() of a string: it is salted per process.
"""

from __future__ import annotations

import hashlib


def stable_int(*parts: object, bits: int = 31) -> int:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") % (1 << bits)


def sample_seed(run_seed: int, prompt_id: str, sample_index: int) -> int:
    return stable_int("sample", run_seed, prompt_id, sample_index)
