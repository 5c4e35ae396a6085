"""Pure functions from stored scores to keep/drop verdicts; thresholds live in pydantic configs."""
