"""factory: turn problems into a verified, versioned chain-of-thought dataset.

Kept import-light on purpose: `import factory` and `factory --help` never import vLLM, Ray or torch.
"""

__version__ = "0.1.0"
