"""``VlmChat`` with a LoRA adapter merged in: how a fine-tuned run is asked questions.

Loading, batching and decoding are ``VlmChat``'s own; the only change is that after the base model
loads, the adapter saved by the finetune flow is applied with ``PeftModel.from_pretrained`` and
merged into the weights, so generation runs at the base model's speed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import Field

from pairsmith.models.adapters.vlm_chat import VlmChat, VlmConfig

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


class AdaptedVlmConfig(VlmConfig):
    adapter_path: str | None = Field(None, description="folder written by PeftModel.save_pretrained; None = base")
    adapter_fingerprint: str | None = Field(
        None, description="hash of the adapter files: part of the per-process cache key, so new weights reload"
    )


class AdaptedVlmChat(VlmChat):
    """Takes an ``AdaptedVlmConfig``; everything but loading is ``VlmChat``'s."""

    def _load(self):
        loaded = super()._load()
        if self.config.adapter_path:
            from peft import PeftModel

            model = PeftModel.from_pretrained(loaded.model, self.config.adapter_path)
            loaded.model = model.merge_and_unload()
            loaded.model.eval()
        return loaded


def adapter_fingerprint(adapter_path: str | Path | None) -> str | None:
    """A hash of the adapter's files: an evaluation id changes when the weights do, not the folder."""
    if adapter_path is None:
        return None
    folder = Path(adapter_path)
    files = [folder / name for name in ADAPTER_FILES if (folder / name).exists()]
    if not any(f.name != "adapter_config.json" for f in files):
        raise ValueError(f"adapter {str(folder)!r}: no adapter weights (adapter_model.safetensors) found")
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        with f.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]
