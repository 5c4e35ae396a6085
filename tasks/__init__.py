"""pairsmith tasks."""
