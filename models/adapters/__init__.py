"""Adapters around real model libraries (open_clip, transformers, ultralytics FastSAM, diffusers, google-genai): lazy-loaded once per process, batched, device chosen once."""
