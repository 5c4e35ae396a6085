"""Tiny random models built from configs, saved and loaded back through the real loaders (tests, benchmarks)."""
