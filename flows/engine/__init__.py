"""Prefect plumbing every flow shares: batches, stages, funnels, progress, task runners, run outcomes."""
