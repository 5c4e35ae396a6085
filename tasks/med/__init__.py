"""Prefect tasks of the MED pipeline: sources, VLM steps, Gemini edits, similarity, records."""
