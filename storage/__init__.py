"""LanceDB schemas, the single writer's upserts, readers and exports; the types every layer shares."""

if not __name__.startswith("pairsmith."):  # the folder imported by its bare name from a checkout
    raise ImportError(f"import pairsmith.storage, not {__name__}: pairsmith installs its packages under 'pairsmith.'")
