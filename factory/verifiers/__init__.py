"""Verifiers judge traces. Each is one module registering one class in VERIFIERS."""

from factory.verifiers.base import VERIFIERS, Verifier, build_verifiers

__all__ = ["VERIFIERS", "Verifier", "build_verifiers"]
