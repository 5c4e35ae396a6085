"""FastSAM region proposals through ultralytics: every segment of an image as a box, a mask, a score.

Img-Diff runs FastSAM-x on both images of a pair (conf 0.05, IoU 0.5) and treats each segment as a
candidate changed region; the removal pipeline also inpaints the masks. The predictor is called on
a list of images at once (ultralytics batches a list into one forward) in chunks of
``batch_size``, with retina masks so masks come back at the input image's resolution.

Weights: ``FastSAM(path)`` downloads known names such as ``FastSAM-x.pt`` when the file is missing.
The runtime's cache folder is searched first, and offline mode refuses to download, with an error
that says where the file was looked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from pairsmith.models.lazy import LazyModel
from pairsmith.models.adapters.ultralytics_import import import_ultralytics
from pairsmith.models.runtime import NOT_CONTENT, ModelRuntime


class FastSamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    weights: str = Field("FastSAM-x.pt", description="FastSAM checkpoint: a path, or a file name looked up in the cache")
    runtime: ModelRuntime = Field(default_factory=ModelRuntime)
    conf: float = Field(0.05, ge=0.0, le=1.0, description="minimum segment confidence (Img-Diff: 0.05)")
    iou: float = Field(0.5, ge=0.0, le=1.0, description="NMS IoU between segments (Img-Diff: 0.5)")
    imgsz: int = Field(1024, ge=32, le=4096, description="inference size; a multiple of 32")
    max_det: int = Field(300, ge=1, le=3000, description="at most this many segments per image")
    retina_masks: bool = Field(True, description="masks at input resolution (else at inference resolution, resized)")
    batch_size: int = Field(8, ge=1, le=256, description="images per forward pass", json_schema_extra=NOT_CONTENT)


@dataclass(frozen=True)
class RegionProposals:
    """Segments of one image, highest score first. ``boxes`` are [x1, y1, x2, y2] in the input
    image's pixels, inside the image and non-empty; ``masks`` are (N, height, width) booleans."""

    boxes: np.ndarray
    masks: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)

    def box_list(self) -> list[list[float]]:
        return [[float(v) for v in box] for box in self.boxes]


@dataclass
class _Loaded:
    model: Any
    device: str
    precision: dict  # {} = fp32; ultralytics 8.4 says quantize=16 for fp16, older versions half=True


class FastSamProposer(LazyModel[FastSamConfig]):
    def _load(self) -> _Loaded:
        import torch

        rt = self.config.runtime
        import_ultralytics(offline=rt.is_offline())
        from ultralytics import FastSAM

        device = rt.torch_device()
        model = FastSAM(resolve_weights(self.config.weights, rt))
        precision = {}
        if device.type == "cuda" and rt.torch_dtype() != torch.float32:  # ultralytics runs fp16, not bf16
            from ultralytics.cfg import DEFAULT_CFG_DICT

            precision = {"quantize": 16} if "quantize" in DEFAULT_CFG_DICT else {"half": True}
        return _Loaded(model, "cuda:0" if device.type == "cuda" and device.index is None else str(device), precision)

    def propose_batch(self, images: Sequence[Image.Image]) -> list[RegionProposals]:
        """One ``RegionProposals`` per image, in order (an image with no segment gets an empty one)."""
        for i, im in enumerate(images):
            if im.width < 1 or im.height < 1:
                raise ValueError(f"image {i} is empty ({im.width}x{im.height})")
        out: list[RegionProposals] = []
        for start in range(0, len(images), self.config.batch_size):
            out += self._propose([im.convert("RGB") for im in images[start:start + self.config.batch_size]])
        return out

    def _propose(self, images: list[Image.Image]) -> list[RegionProposals]:
        loaded = self.loaded()
        results = loaded.model.predict(
            images, device=loaded.device, **loaded.precision, imgsz=self.config.imgsz, conf=self.config.conf,
            iou=self.config.iou, max_det=self.config.max_det, retina_masks=self.config.retina_masks, verbose=False,
        )
        return [proposals_from_result(result, im.width, im.height) for result, im in zip(results, images)]


def proposals_from_result(result: Any, width: int, height: int) -> RegionProposals:
    """Turn an ultralytics ``Results`` into clipped, non-empty boxes with masks at (height, width)."""
    from torch.nn.functional import interpolate

    empty = RegionProposals(np.zeros((0, 4), np.float32), np.zeros((0, height, width), bool), np.zeros(0, np.float32))
    if result.boxes is None or len(result.boxes) == 0:
        return empty
    boxes = result.boxes.xyxy.detach().float().cpu().numpy().reshape(-1, 4)
    scores = result.boxes.conf.detach().float().cpu().numpy().reshape(-1)
    if result.masks is not None:
        masks = result.masks.data.detach().float()
        if tuple(masks.shape[-2:]) != (height, width):
            masks = interpolate(masks[None], size=(height, width), mode="nearest")[0]
        masks = (masks > 0.5).cpu().numpy()
    else:  # a detector without masks: the box is the mask
        masks = np.zeros((len(boxes), height, width), bool)
        for mask, (x1, y1, x2, y2) in zip(masks, np.round(boxes).astype(int)):
            mask[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = True
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & np.isfinite(scores)
    order = np.argsort(-scores[keep], kind="stable")
    return RegionProposals(boxes[keep][order].astype(np.float32), masks[keep][order], scores[keep][order].astype(np.float32))


def resolve_weights(weights: str, rt: ModelRuntime) -> str:
    """A local checkpoint path, or the bare name for ultralytics to download (online only)."""
    candidates = [Path(weights)]
    if rt.cache_dir:
        candidates.append(Path(rt.cache_dir) / Path(weights).name)
    for path in candidates:
        if path.is_file():
            return str(path)
    if rt.is_offline() or os.sep in weights:
        where = ", ".join(str(p) for p in candidates)
        raise FileNotFoundError(f"FastSAM weights {weights!r} not found (looked in {where})"
                                + ("; offline mode: no download" if rt.is_offline() else ""))
    return weights
