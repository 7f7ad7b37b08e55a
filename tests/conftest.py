"""Shared test setup: no network, an isolated HF cache and factory cache per session."""

from __future__ import annotations

import os
import tempfile

# No test may reach the Hub: the real client talks only to tests/support/hubserver.py on loopback.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A fresh datasets cache per session: `datasets` keys its cache of local files loosely, and a
# test that rebuilds a version at a path used before must never read the old rows back.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="factory-test-hfds-")
