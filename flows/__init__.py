"""pairsmith flows."""
