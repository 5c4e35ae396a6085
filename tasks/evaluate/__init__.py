"""Prefect tasks and metrics of the evaluate flow: ask a model, score its answers."""
