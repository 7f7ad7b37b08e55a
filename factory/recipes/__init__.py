"""Recipes: one module per task family (math, code, ...), each a usage docstring plus build(cfg).

A recipe is a starting config and what to know about the task (datasets, verifiers, pitfalls); the
stages that run it are the rest of factory (runner, verifiers, store), driven by factory.api.
"""
