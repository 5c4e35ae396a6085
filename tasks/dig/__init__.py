"""Prefect tasks of the dig-render pipeline: plan scene pairs, render them, build their records."""
