"""pairsmith models."""
