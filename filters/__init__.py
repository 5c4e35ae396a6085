"""Pure functions from stored scores to keep/drop verdicts; thresholds live in pydantic configs."""

if not __name__.startswith("pairsmith."):  # the folder imported by its bare name from a checkout
    raise ImportError(f"import pairsmith.filters, not {__name__}: pairsmith installs its packages under 'pairsmith.'")
