"""Test support: the loopback Hub server and process helpers."""
