"""Subcommands of `factory`: one module each, discovered by factory.cli."""
