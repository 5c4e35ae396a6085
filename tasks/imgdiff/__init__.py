"""Prefect tasks of the Img-Diff pipelines (object replacement and removal) and the items they pass along."""
