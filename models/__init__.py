"""Models by role: library adapters (``adapters/``), weight-free proposers (``proposers/``), training loops
(``training/``), the noun lexicon (``lexicon/``); at the root what they all share (runtime, lazy loading,
failure kinds), and tiny builders for tests (``tiny/``)."""

if not __name__.startswith("pairsmith."):  # the folder imported by its bare name from a checkout
    raise ImportError(f"import pairsmith.models, not {__name__}: pairsmith installs its packages under 'pairsmith.'")
