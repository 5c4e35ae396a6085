"""One Img-Diff candidate pair and its candidate regions, as they move through a flow's stages.

Each stage task takes a batch's items, works on the pairs (or regions) still alive, records one
verdict per pair (or region) in its own ``StageStats`` and drops a loser by setting its reason.
Dropped pairs and regions stay in the lists, so the writer stores them with every score measured
before they fell out. A model call that raises drops everything that stage sent it as
``<stage>_error`` (the message goes to ``drop_detail``) and the run goes on.

Scores live in one mapping per pair or region, ``scores``, keyed by the stored column: the stage
that measures a score writes it there (the columns a stage writes are declared with it, in
``pairsmith.filters.imgdiff.pipelines``) and the records step stores the mapping as it is. A new
score is its schema column and the stage that writes it.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import numpy as np
from PIL import Image

from pairsmith.models.failures import failure_reason
from pairsmith.filters.pipeline import Stage
from pairsmith.models.adapters.blip_itm import ItmScores
from pairsmith.models.adapters.caption_answer import CaptionRewrite
from pairsmith.storage.ids import stable_hash
from pairsmith.storage.store import short_error
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.tasks.candidate import Candidate, alive, judge  # noqa: F401 - alive, judge: the steps import them here
from pairsmith.tasks.stage import call_per_item

T = TypeVar("T")
X = TypeVar("X")


Score = float | str | None  # a number, or a text a model step wrote (a caption, a description)


@dataclass
class RegionCandidate(Candidate):
    """A box where the pair may differ, with what every later stage measured on it (``scores``); stored
    with its ``drop_reason`` as the regions' ``reason`` (a region's ``drop_stage`` is not stored)."""

    region_id: str
    box: list[float]  # [x1, y1, x2, y2], before-image pixels
    proposer: str  # fastsam | diffmap
    scores: dict[str, Score] = field(default_factory=dict)  # regions column -> value
    mask: np.ndarray | None = None  # removal: bool mask cut to the box's integer bounds (see full_mask)
    image_edited: Image.Image | None = None  # removal: the before image with this region inpainted
    picture: Image.Image | None = None  # the side-by-side with red boxes the sample shows

    def row(self, width: int, height: int) -> dict[str, Any]:
        """What a keep rule reads: the region's scores, id and box, and its pair's image size."""
        return {**self.scores, "region_id": self.region_id, "box": self.box, "width": width, "height": height}

    def full_mask(self, width: int, height: int) -> Image.Image:
        """The mask as an L image of the whole picture (the box itself when the proposer gave none)."""
        x1, y1, x2, y2 = int_box(self.box, width, height)
        canvas = np.zeros((height, width), np.uint8)
        if self.mask is not None and self.mask.any():
            canvas[y1:y2, x1:x2] = self.mask.astype(np.uint8) * 255
        else:
            canvas[y1:y2, x1:x2] = 255
        return Image.fromarray(canvas, mode="L")


@dataclass
class ImgDiffItem(Candidate):
    """One candidate pair: its captions, images, pair scores, regions and verdict."""

    index: int
    pair_id: str
    seed: int | None
    source_caption: str | None = None
    rewrite_round: int = 0  # round of noun replacement of its source caption (CaptionRewriterConfig.rounds)
    rewrite: CaptionRewrite | None = None
    origin: str | None = None
    before: Image.Image | None = None
    after: Image.Image | None = None
    caption_after: str | None = None
    scores: dict[str, Score] = field(default_factory=dict)  # pairs column -> value
    regions: list[RegionCandidate] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return self.before.size if self.before is not None else (0, 0)

    def live_regions(self) -> list[RegionCandidate]:
        return [r for r in self.regions if r.alive]

    def row(self) -> dict[str, Any]:
        """What a pair keep rule reads: the pair's scores and image size."""
        width, height = self.size
        return {**self.scores, "pair_id": self.pair_id, "width": width, "height": height}


def live_regions(items: list[ImgDiffItem]) -> list[tuple[ImgDiffItem, RegionCandidate]]:
    """(pair, region) for every region still alive on a pair still alive, in order."""
    return [(item, region) for item in alive(items) for region in item.live_regions()]


def model_step(stats: StageStats, todo: list[X], call: Callable[[list[X]], list[T]], model: str) -> list[T | None]:
    """``call(todo)``: one batched model call, one result per element of ``todo`` (pairs, or
    (pair, region) tuples), in order. Failures are isolated per element
    (``pairsmith.tasks.stage.call_per_item``): if the batch raises, each element is tried alone, and
    one that still raises is dropped with the model (``model``, a hub id or file) and the error as the
    detail, its result None, as ``<stage>_error`` if the error is transient (retried by the next run)
    or ``<stage>_rejected`` if it will repeat (``pairsmith.models.failures``); the others go on. A
    model that cannot load raises ``ModelUnavailable``: the run stops, naming it."""

    def fail(element: X, err: Exception) -> None:
        detail = f"{model}: {type(err).__name__}: {short_error(err, limit=300)}"
        task_logger().warning("%s failed for one item: %s", stats.stage, detail)
        judge(stats, element[1] if isinstance(element, tuple) else element, Verdict.drop(failure_reason(stats.stage, err)),
              detail)

    return call_per_item(lambda part: list(call(part)), todo, fail)


def score_and_judge(stats: StageStats, stage: Stage, todo: list[tuple[ImgDiffItem, RegionCandidate]],
                    measure: Callable[[list[tuple[ImgDiffItem, RegionCandidate]]], list[dict[str, Score]]],
                    model: str, thresholds: Any) -> None:
    """A region filter's work: one batched model call (``measure`` of some of ``todo``) giving each
    region its scores (one mapping per region, in order), stored on the region; then ``stage``'s keep
    rule, the one ``pairsmith refilter`` applies to the stored scores, judges each region."""
    measured = model_step(stats, todo, measure, model)
    for (item, region), scores in zip(todo, measured):
        if scores is None:
            continue
        region.scores.update(scores)
        judge(stats, region, stage.judge(region.row(*item.size), thresholds))


def judge_answer(stats: StageStats, target: RegionCandidate, answer: str | None, raw: str) -> None:
    """Keep a region whose model answer has words; drop it as ``<stage>_empty`` (the raw answer as
    the detail) when the answer was refused (``prompts.clean_answer`` gave None)."""
    judge(stats, target, KEEP if answer else Verdict.drop(f"{stats.stage}_empty"), None if answer else raw[:300])


def blip_scores(scores: ItmScores, k: int, n: int, prefix: str) -> dict[str, float]:
    """Row ``k`` (before) and ``n + k`` (after) of a BLIP call as the stored columns ``<prefix>_before``,
    ``<prefix>_after`` (ITM-head probability) and ``<prefix>_cosine_*`` (contrastive cosine)."""
    return {f"{prefix}_before": float(scores.itm[k]), f"{prefix}_after": float(scores.itm[n + k]),
            f"{prefix}_cosine_before": float(scores.cosine[k]), f"{prefix}_cosine_after": float(scores.cosine[n + k])}


def task_logger() -> logging.Logger:
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("pairsmith.imgdiff")


def int_box(box: list[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Integer pixel bounds covering ``box`` inside the image, at least one pixel wide and high."""
    x1 = min(max(int(math.floor(box[0])), 0), width - 1)
    y1 = min(max(int(math.floor(box[1])), 0), height - 1)
    x2 = max(min(int(math.ceil(box[2])), width), x1 + 1)
    y2 = max(min(int(math.ceil(box[3])), height), y1 + 1)
    return x1, y1, x2, y2


def crop(image: Image.Image, box: list[float]) -> Image.Image:
    return image.crop(int_box(box, image.width, image.height))


def png_bytes(image: Image.Image | None) -> bytes | None:
    if image is None:
        return None
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def derived_seed(*parts: Any) -> int:
    """A seed in [0, 2**60) from ids: the same pair or region always gets the same seed."""
    return int(stable_hash(list(parts), 15), 16)


def box_line_width(width: int, height: int) -> int:
    """Red boxes stay visible on large images: 2 px up to 512 px, thicker above."""
    return max(2, round(max(width, height) / 256))
