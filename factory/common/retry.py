"""One retry policy and one secret scrubber for every HTTP client (the Hub publisher, the
OpenAI-compatible engine, the LLM judge through that engine).

What is transient differs per client (huggingface_hub raises httpx errors, the engine sees
aiohttp ones), so each client classifies its own failures; the timing (how long to wait before
try k) and what never reaches a log (tokens, keys, bearer values) are the same everywhere.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

# HTTP statuses worth another try: timeout, rate limit, and the server errors a restart or a
# load balancer produces. Anything else (4xx) is the request's fault and fails the same again.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`tries` calls at most; before try k+1 wait `delay(k)`.

    jitter="full":  uniform(0, min(cap, base * 2**k))            (AWS's "full jitter")
    jitter="equal": b/2 + uniform(0, b/2), b = min(cap, base * 2**k)
    Either way replicas that failed together do not retry in lockstep. A server's Retry-After
    wins over both, bounded by `cap`: the server knows when it has room.
    """

    tries: int = 5
    base: float = 1.0
    cap: float = 20.0
    jitter: Literal["full", "equal"] = "full"

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.cap)
        bound = min(self.cap, self.base * 2**attempt)
        if self.jitter == "equal":
            return bound / 2 + random.uniform(0, bound / 2)
        return random.uniform(0, bound)


_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")
_HF_TOKEN_LIKE = re.compile(r"\bhf_[A-Za-z0-9]{8,}\b")


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with every given secret, every bearer value and every `hf_...` token-like word
    replaced by ***. Longer secrets go first, so a secret that contains another is hidden whole."""
    for s in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(s, "***")
    text = _BEARER.sub(r"\1***", text)
    return _HF_TOKEN_LIKE.sub("hf_***", text)
