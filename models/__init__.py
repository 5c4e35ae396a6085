"""Adapters around real model libraries, lazy-loaded once per process, and tiny builders for tests."""

if not __name__.startswith("pairsmith."):  # the folder imported by its bare name from a checkout
    raise ImportError(f"import pairsmith.models, not {__name__}: pairsmith installs its packages under 'pairsmith.'")
