"""Veil benchmarks: each module prints a table and the command that made it (`make bench` runs them all)."""
