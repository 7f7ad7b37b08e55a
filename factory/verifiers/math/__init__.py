"""Math answers against references: guards.py (cheap tiers, driver), parse.py (strings to sympy,
whole or nothing) and compare.py (sympy and math-verify) in worker processes, verifier.py (the
`math` verifier). What callers use is here."""

from factory.verifiers.math.guards import exact_number, has_percent, prepare, too_complex
from factory.verifiers.math.verifier import Job, MathParams, MathVerifier

__all__ = ["Job", "MathParams", "MathVerifier", "exact_number", "has_percent", "prepare", "too_complex"]
