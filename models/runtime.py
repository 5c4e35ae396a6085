"""Where and how models run, decided once per process: device, dtype, cache folder, offline mode.

Every adapter takes a ``ModelRuntime`` instead of choosing a device itself, so one setting moves a
whole flow to a GPU worker, and half precision is used there and never on the CPU (where fp16
matmuls are slow or unsupported).
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# pairsmith.storage.ids.NOT_CONTENT (models import nothing of ours): marks a config field that never
# changes what a run writes, so it stays out of run and pair ids.
NOT_CONTENT = {"content": False}


class ModelRuntime(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="auto: cuda if available, else cpu", json_schema_extra=NOT_CONTENT)
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: bfloat16 on GPUs that support it, else float16 on GPU, float32 on CPU"
    )
    cache_dir: str | None = Field(None, description="model cache folder; default: HF_HOME's hub cache", json_schema_extra=NOT_CONTENT)
    offline: bool | None = Field(None, description="load from the cache only; default: HF_HUB_OFFLINE", json_schema_extra=NOT_CONTENT)

    def torch_device(self):
        import torch

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch sees no CUDA GPU; use device 'cpu' or 'auto'")
        return torch.device(self.device)

    def on_gpu(self) -> bool:
        """Whether the model runs on a CUDA GPU (its Prefect task then takes a ``tag:gpu`` slot)."""
        return self.torch_device().type == "cuda"

    def torch_dtype(self):
        import torch

        if self.dtype != "auto":
            return getattr(torch, self.dtype)
        device = self.torch_device()
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32

    def is_offline(self) -> bool:
        if self.offline is not None:
            return self.offline
        return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}

    def hf_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``from_pretrained`` that honour the cache folder and offline mode."""
        kwargs: dict[str, Any] = {}
        if self.cache_dir:
            kwargs["cache_dir"] = self.cache_dir
        if self.is_offline():
            kwargs["local_files_only"] = True
        return kwargs
