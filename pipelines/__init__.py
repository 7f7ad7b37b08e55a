"""Recipes: one module per task family (math, code, ...), each a usage docstring plus build(cfg)."""
