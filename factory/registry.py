"""A tiny name -> class registry, so adding an engine, verifier or source is one new file."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str):
        self.kind = kind
        self._package = package  # every module in it may register classes; imported on first miss
        self._classes: dict[str, type[T]] = {}
        self._discovered = False

    def register(self, name: str):
        def decorator(cls: type[T]) -> type[T]:
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._classes[name] = cls
            cls.name = name  # type: ignore[attr-defined]
            return cls

        return decorator

    def _discover(self) -> None:
        # Modules keep heavy imports (vllm, math_verify, ...) inside functions, so importing all
        # of them is cheap; this is what makes "one new file" enough to add an implementation.
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self._package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if mod.name != "base" and not mod.name.startswith("_"):
                importlib.import_module(f"{self._package}.{mod.name}")

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._classes)

    def get(self, name: str) -> type[T]:
        if name not in self._classes:
            self._discover()
        if name not in self._classes:
            raise KeyError(
                f"unknown {self.kind} {name!r}; known {self.kind}s are: {', '.join(self.names())}"
            )
        return self._classes[name]
