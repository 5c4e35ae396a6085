"""Training loops: LoRA SFT and GRPO of a VLM through TRL, and what they share."""
