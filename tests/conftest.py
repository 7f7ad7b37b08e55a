"""Shared test setup: no network, an isolated HF cache and factory cache per session."""

from __future__ import annotations

import os

# No test may reach the Hub: the real client talks only to tests/hubserver.py on loopback.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
