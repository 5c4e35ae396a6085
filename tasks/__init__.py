"""pairsmith's Prefect tasks: units of work over a batch of items, one sub-package per pipeline."""

if not __name__.startswith("pairsmith."):  # the folder imported by its bare name from a checkout
    raise ImportError(f"import pairsmith.tasks, not {__name__}: pairsmith installs its packages under 'pairsmith.'")
