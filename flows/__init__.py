"""pairsmith's Prefect flows (one module per pipeline), their configs, the CLI and the Prefect plumbing."""

if not __name__.startswith("pairsmith."):  # the folder imported by its bare name from a checkout
    raise ImportError(f"import pairsmith.flows, not {__name__}: pairsmith installs its packages under 'pairsmith.'")
