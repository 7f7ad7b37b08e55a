"""Engines turn prompts into completions. Each is one module registering one class in ENGINES."""

from factory.engines.base import ENGINES, Engine

__all__ = ["ENGINES", "Engine"]
