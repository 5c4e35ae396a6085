"""Where and how models run, decided once per process: device, dtype, cache folder, offline mode.

Every adapter takes a ``ModelRuntime`` instead of choosing a device itself, so one setting moves a
whole flow to a GPU worker, and half precision is used there and never on the CPU (where fp16
matmuls are slow or unsupported).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
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
    offline: bool | None = Field(None, description="load from the cache only; default: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE)", json_schema_extra=NOT_CONTENT)

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
        return any(os.environ.get(name, "0").lower() in {"1", "true", "yes", "on"}
                   for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))

    def hf_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``from_pretrained`` that honour the cache folder and offline mode."""
        kwargs: dict[str, Any] = {}
        if self.cache_dir:
            kwargs["cache_dir"] = self.cache_dir
        if self.is_offline():
            kwargs["local_files_only"] = True
        return kwargs

    def check_model_source(self, model_id: str) -> None:
        """Fail in seconds, naming the model, if ``from_pretrained(model_id)`` could only fail after
        minutes of the hub client's retries: ``model_id`` is not a folder, not in the Hugging Face
        cache (``cache_dir`` or HF_HOME's), and it cannot be downloaded (offline mode, or the hub
        endpoint, or the HTTPS proxy, does not answer a connect within ``HUB_PROBE_SECONDS``).

        Raises ``pairsmith.models.failures.ModelUnavailable`` (one line: the model, what was looked
        at, what to do). A folder, a cached hub id or a reachable hub passes; whether the files are
        whole is for the load to find out."""
        from pairsmith.models.failures import ModelUnavailable

        problem = model_source_problem(model_id, self.cache_dir, self.is_offline())
        if problem:
            raise ModelUnavailable(problem)


HUB_PROBE_SECONDS = 3.0
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def model_source_problem(model_id: str, cache_dir: str | None, offline: bool) -> str | None:
    """Why ``model_id`` cannot be loaded from here, or None if it may be (see ``check_model_source``)."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        return None
    if path.exists():
        return f"model {model_id!r}: not a folder (a model is a folder or a hub id)"
    if not _HUB_ID.match(model_id) or model_id.startswith((".", "~")):
        return f"model {model_id!r}: no such folder"
    if _in_hub_cache(model_id, cache_dir):
        return None
    where = cache_dir or _hub_cache()
    if offline:
        return (f"model {model_id!r}: not a local folder and not in the Hugging Face cache {where}; offline mode "
                "(HF_HUB_OFFLINE or runtime.offline) forbids downloading it")
    unreachable = _hub_unreachable()
    if unreachable:
        return (f"model {model_id!r}: not a local folder, not in the Hugging Face cache {where}, and it cannot be "
                f"downloaded: {unreachable}; download it where there is a network or give a local folder")
    return None


def _hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _in_hub_cache(model_id: str, cache_dir: str | None) -> bool:
    """Whether a snapshot of the hub repo ``model_id`` is in the cache (what offline loads read)."""
    from huggingface_hub.file_download import repo_folder_name

    snapshots = Path(cache_dir or _hub_cache()) / repo_folder_name(repo_id=model_id, repo_type="model") / "snapshots"
    try:
        return any(p.is_dir() and any(p.iterdir()) for p in snapshots.iterdir())
    except OSError:
        return False


def _hub_unreachable() -> str | None:
    """None if a TCP connect to the hub (or to the HTTPS proxy in the environment) succeeds within
    ``HUB_PROBE_SECONDS``, else what failed, in words. Name resolution runs in a thread, so a DNS
    server that never answers costs the same few seconds."""
    import socket
    import threading
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlsplit(proxy if proxy and not _no_proxy(urlsplit(constants.ENDPOINT).hostname) else constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    what = f"{'the HTTPS proxy ' if proxy and url.geturl() == proxy else ''}{host}:{port}"
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=HUB_PROBE_SECONDS).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(f"{what} does not answer ({type(err).__name__}: {err})")

    thread = threading.Thread(target=connect, name="hub-probe", daemon=True)
    thread.start()
    thread.join(HUB_PROBE_SECONDS + 0.5)
    return outcome[0] if outcome else f"{what} does not answer within {HUB_PROBE_SECONDS:.0f} s"


def _no_proxy(host: str | None) -> bool:
    skip = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
    return bool(host) and any(host == h.strip() or host.endswith("." + h.strip().lstrip(".")) for h in skip.split(",")
                              if h.strip())
