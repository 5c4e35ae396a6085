"""Box conventions: stored boxes in pixels of the original image, converted per model family.

Stored boxes are always ``[x1, y1, x2, y2]`` in absolute pixels of the original before image
(design.md §4.7; DiG's grounding prompt asks for exactly that). VLM families answer in other frames,
always of the picture the model is *shown* (the before image, or the side-by-side picture whose
left part is the before image at the origin):

* ``pixels``: absolute pixels of the shown picture, unchanged (DiG, LLaVA-style training);
* ``norm1000``: integers 0-1000 of the shown picture's width and height (Qwen2-VL's grounding
  format, Qwen2-VL technical report §2.2.1 "Visual grounding"; Qwen3-VL returns 0-1000 again);
* ``resized-pixels``: absolute pixels of the picture *after the model's processor resized it*
  (Qwen2.5-VL, technical report §2.2 "absolute coordinates"): a 320x240 render is seen as 308x252.
  The size comes from transformers' own ``smart_resize`` (``models/qwen2_vl/image_processing_qwen2_vl.py``)
  with the processor's ``patch_size * merge_size`` factor and its ``min_pixels`` / ``max_pixels``
  (defaults 14 * 2, 56 * 56, 28 * 28 * 1280), so it matches what the processor does.

``BoxFormat.to_model`` converts stored boxes into a format (export, SFT/GRPO data, prompt text);
``BoxFormat.to_pixels`` converts a model's answer back (reward, evaluate). Pure Python: transformers
is imported only for ``resized-pixels``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

BoxFormatName = Literal["pixels", "norm1000", "resized-pixels"]
BOX_FORMATS: tuple[str, ...] = ("pixels", "norm1000", "resized-pixels")
BOX_TASKS: tuple[str, ...] = ("grounding",)
"""Sample tasks whose prompt asks for boxes and whose answer is the box list."""
DEFAULT_PROCESSOR = "qwen2.5-vl"
"""``resized-pixels`` without a processor folder: Qwen2-VL / Qwen2.5-VL's image processor defaults."""

PIXEL_CLAUSE = "absolute pixel coordinates of the first image ({width}x{height})"
"""How a stored grounding prompt names its frame; ``BoxFormat.clause`` rewrites it per format."""

Box = list[float]


@dataclass(frozen=True)
class ResizeRule:
    """A Qwen2-VL-style processor's resize: sides to multiples of ``factor``, area within the bounds."""

    factor: int = 28
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280

    @classmethod
    def from_processor(cls, name_or_path: str | None) -> "ResizeRule":
        """The rule of a processor folder (its ``preprocessor_config.json``), or the defaults for None /
        ``qwen2.5-vl``. Raises ValueError naming the processor when it is not a Qwen2-VL-style one."""
        if name_or_path in (None, DEFAULT_PROCESSOR):
            return cls()
        from transformers import AutoImageProcessor

        try:
            proc = AutoImageProcessor.from_pretrained(name_or_path)
        except (OSError, ValueError) as err:
            raise ValueError(f"--processor {name_or_path!r}: cannot load an image processor ({err})") from None
        size = getattr(proc, "size", None) or {}
        min_px = getattr(proc, "min_pixels", None) or _get(size, "shortest_edge")
        max_px = getattr(proc, "max_pixels", None) or _get(size, "longest_edge")
        patch, merge = getattr(proc, "patch_size", None), getattr(proc, "merge_size", None)
        if not (patch and merge and min_px and max_px):
            raise ValueError(f"--processor {name_or_path!r}: not a Qwen2-VL-style processor "
                             "(needs patch_size, merge_size and min/max pixels)")
        return cls(int(patch) * int(merge), int(min_px), int(max_px))

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) the processor resizes a ``width`` x ``height`` picture to."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        h, w = smart_resize(height, width, factor=self.factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        return int(w), int(h)


def _get(size, key: str):
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


@dataclass(frozen=True)
class BoxFormat:
    """One answer convention; ``width`` / ``height`` below are the shown picture's, in pixels."""

    name: BoxFormatName = "pixels"
    resize: ResizeRule | None = None

    @classmethod
    def named(cls, name: str, processor: str | None = None) -> "BoxFormat":
        if name not in BOX_FORMATS:
            raise ValueError(f"box format {name!r}: use one of {', '.join(BOX_FORMATS)}")
        if processor is not None and name != "resized-pixels":
            raise ValueError(f"a processor only applies to box format 'resized-pixels', not {name!r}")
        return cls(name, ResizeRule.from_processor(processor) if name == "resized-pixels" else None)

    def frame(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) that model coordinates span."""
        if self.name == "norm1000":
            return 1000, 1000
        if self.name == "resized-pixels":
            return (self.resize or ResizeRule()).resized(width, height)
        return width, height

    def to_model(self, boxes: list[Box], width: int, height: int) -> list[list[int]]:
        """Stored pixel boxes as the model should answer them (integers, clamped to the frame)."""
        fw, fh = self.frame(width, height)
        sx, sy = fw / width, fh / height
        return [[_clamp(round(x1 * sx), fw), _clamp(round(y1 * sy), fh), _clamp(round(x2 * sx), fw),
                 _clamp(round(y2 * sy), fh)] for x1, y1, x2, y2 in boxes]

    def to_pixels(self, boxes: list[Box], width: int, height: int) -> list[Box]:
        """A model's boxes back in pixels of the shown picture (floats, not rounded)."""
        fw, fh = self.frame(width, height)
        sx, sy = width / fw, height / fh
        return [[x1 * sx, y1 * sy, x2 * sx, y2 * sy] for x1, y1, x2, y2 in boxes]

    def clause(self, original: tuple[int, int], shown: tuple[int, int], side_by_side: bool = False) -> str:
        """How a prompt names the coordinate frame, in one statement true to the numbers ``to_model`` gives:
        ``original`` is the before image's size, ``shown`` the picture's the model sees (the same, or the
        whole side-by-side picture, whose left part at the origin is the before image)."""
        if side_by_side:
            whole = f"the whole picture ({shown[0]}x{shown[1]}: both images and the bar between them)"
            if self.name == "norm1000":
                return f"coordinates of {whole} normalised to 0-1000 (x by its width, y by its height)"
            if self.name == "resized-pixels":
                fw, fh = self.frame(*shown)
                return f"absolute pixel coordinates of the whole picture as you see it ({fw}x{fh})"
            return (f"absolute pixel coordinates of {whole}; the first image is its left "
                    f"{original[0]}x{original[1]} part, at the origin")
        if self.name == "norm1000":
            return "coordinates of the first image normalised to 0-1000 (x by its width, y by its height)"
        if self.name == "resized-pixels":
            fw, fh = self.frame(*shown)
            return f"absolute pixel coordinates of the first image as you see it ({fw}x{fh})"
        return PIXEL_CLAUSE.format(width=original[0], height=original[1])

    def prompt(self, text: str, original: tuple[int, int], shown: tuple[int, int], side_by_side: bool = False) -> str:
        """A stored grounding prompt with its frame clause (``PIXEL_CLAUSE`` of ``original``) in this format."""
        stored = PIXEL_CLAUSE.format(width=original[0], height=original[1])
        return text.replace(stored, self.clause(original, shown, side_by_side))

    def grounding(
        self, turns: list[tuple[str, str]], boxes: list[Box], original: tuple[int, int], shown: tuple[int, int],
        side_by_side: bool = False,
    ) -> tuple[list[tuple[str, str]], list[list[int]]]:
        """A grounding sample's (role, text) turns and stored boxes in this format: user turns name the
        frame (side-by-side: the whole picture, in every format), the assistant's answer is the converted
        box list (as stored, for ``pixels``)."""
        model = self.to_model(boxes, *shown)
        if self.name == "pixels" and not side_by_side:
            return turns, model
        answer = json.dumps(model)
        return [(role, answer if role == "assistant" else self.prompt(text, original, shown, side_by_side))
                for role, text in turns], model


def _clamp(v: int, hi: int) -> int:
    return max(0, min(hi, v))
