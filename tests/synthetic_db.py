"""Databases generated through the product's own store, for storage tests and ``benchmarks/storage_scale.py``.

A synthetic run looks like a ``dig-render`` run to the storage layer: 320x240 PNG pairs with 8-bit
object-index maps, 9 in 10 kept (a dropped one keeps its renders, as a visibility drop does), 1-3
ground-truth regions per pair, the render's grounding and difference-caption samples (built by the
product's own sample builders, splits drawn from the pair id) and six stage-stats rows per batch.
Images come from a small pool of render-like pictures (a sky gradient, render noise, coloured
shapes), each made unique per pair by a private ancillary PNG chunk of random bytes (decoders skip
it): Lance compresses repeated bytes, so reused pictures would store as nearly nothing, while a
unique, incompressible ~75 KB per image is what real renders cost. Building 50,000 pairs thus
costs no encoding per pair.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from pairsmith.storage.ids import stable_id
from pairsmith.storage.schemas import LanceModel, PairRow, RegionRow, utc_now
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.tasks.sample_builders import SplitFractions, diff_caption_sample, grounding_sample, split_for
from pairsmith.tasks.write_batch import stage_rows

METHOD = "dig-render"
STAGES = ("plan", "render", "visibility", "regions", "samples", "write")


def render_like_png(seed: int, width: int = 320, height: int = 240, noise: float = 0.0) -> bytes:
    """A PNG that compresses like a Cycles render at 8 samples (smooth background, noise, objects)."""
    rng = np.random.default_rng(seed)
    y = np.mgrid[0:height, 0:width][0]
    pixels = (90 + 60 * y / height)[..., None] + np.array([0, 5, 10]) + rng.normal(0, noise, (height, width, 3))
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        cx, cy, r = rng.integers(20, width - 20), rng.integers(20, height - 20), rng.integers(8, 30)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def unique_png(base: bytes, salt: int, extra: int) -> bytes:
    """``base`` with a private ancillary chunk (``prNd``) of ``extra`` random bytes before IEND: same picture."""
    data = np.random.default_rng(salt).bytes(extra)
    chunk = struct.pack(">I", len(data)) + b"prNd" + data + struct.pack(">I", zlib.crc32(b"prNd" + data))
    return base[:-12] + chunk + base[-12:]  # IEND is the last 12 bytes


def index_png(seed: int, width: int = 320, height: int = 240) -> bytes:
    rng = np.random.default_rng(seed)
    ids = np.zeros((height, width), np.uint8)
    for k in range(1, 5):
        x, y = rng.integers(0, width - 40), rng.integers(0, height - 40)
        ids[y:y + 30, x:x + 30] = k
    buf = io.BytesIO()
    Image.fromarray(ids).save(buf, "PNG")
    return buf.getvalue()


@dataclass
class SyntheticRun:
    run_id: str = "synthetic-run"
    width: int = 320
    height: int = 240
    pool_size: int = 16
    unique_bytes: int = 66_000  # random bytes that make each image unique (what it costs on disk)

    def __post_init__(self):
        self.pool = [render_like_png(i, self.width, self.height) for i in range(self.pool_size)]
        self.index_pool = [index_png(i, self.width, self.height) for i in range(4)]

    def image(self, i: int, side: int) -> bytes:
        return unique_png(self.pool[(i + side) % self.pool_size], 2 * i + side, self.unique_bytes)

    def pair_id(self, i: int) -> str:
        return stable_id("synthetic", self.run_id, i)

    def batch(self, lo: int, hi: int) -> tuple[dict[str, list[LanceModel]], list[StageStats]]:
        """Rows of pairs ``lo`` .. ``hi - 1``, as a flow's writer gets them, and the batch's stage stats."""
        pairs, regions, samples = [], [], []
        stats = {s: StageStats(s) for s in STAGES}
        now = utc_now()
        for i in range(lo, hi):
            pid = self.pair_id(i)
            kept = i % 10 != 9
            n = 1 + i % 3
            boxes = [[20.0 + 40 * k, 30.0, 60.0 + 40 * k, 80.0 + k] for k in range(n)]
            pairs.append(PairRow(
                pair_id=pid, run_id=self.run_id, method=METHOD, image_before=self.image(i, 0),
                image_after=self.image(i, 1), width=self.width, height=self.height,
                caption_before="a large red metal cube left of a small blue sphere",
                caption_after="a large red metal sphere left of a small blue sphere", edit_category="shape",
                seed=i, scene_before='{"objects": []}', scene_after='{"objects": []}', changes="[]",
                index_before=self.index_pool[i % 4], index_after=self.index_pool[(i + 1) % 4],
                subset="single" if n == 1 else "double" if n == 2 else "mixed", n_changes=n, attempts=1,
                status="kept" if kept else "dropped", drop_stage=None if kept else "visibility",
                drop_reason=None if kept else "visibility_too_small", created_at=now,
            ))
            for k, box in enumerate(boxes):
                regions.append(RegionRow(
                    region_id=stable_id(pid, "render-gt", k), pair_id=pid, run_id=self.run_id, box=box,
                    proposer="render-gt", change_type="shape", object_description="a large red metal cube",
                    difference_caption="The large red metal cube left of the small blue sphere became a sphere.",
                    status="kept" if kept else "dropped", reason=None if kept else "visibility_too_small",
                    created_at=now,
                ))
            for s in STAGES[:3]:
                stats[s].record(KEEP)
            stats["visibility"].record(KEEP if kept else Verdict.drop("visibility_too_small"))
            if not kept:
                continue
            common = dict(pair_id=pid, run_id=self.run_id, method=METHOD, category="shape",
                          split=split_for(pid, SplitFractions()))
            subset = "single" if n == 1 else "double" if n == 2 else "mixed"
            if subset != "mixed":
                samples.append(grounding_sample(**common, boxes=boxes, width=self.width, height=self.height,
                                                subset=subset, state_count=True))
            samples.append(grounding_sample(**common, boxes=boxes, width=self.width, height=self.height,
                                            subset="mixed", state_count=False))
            samples.append(diff_caption_sample(**common, sentences=["The cube became a sphere."] * n, boxes=boxes,
                                               subset=subset))
            for s in STAGES[3:]:
                stats[s].record(KEEP)
        return {"pairs": pairs, "regions": regions, "samples": samples}, list(stats.values())

    def batches(self, n_pairs: int, batch_pairs: int, start: int = 0) -> Iterator[tuple[str, dict, list]]:
        for lo in range(start, start + n_pairs, batch_pairs):
            hi = min(lo + batch_pairs, start + n_pairs)
            yield f"{lo:07d}-{hi:07d}", *self.batch(lo, hi)


def build(store, run: SyntheticRun, n_pairs: int, batch_pairs: int = 500, start: int = 0) -> None:
    """Write ``n_pairs`` pairs of ``run`` through ``PairStore.upsert``, ``batch_pairs`` per commit."""
    for name, tables, stages in run.batches(n_pairs, batch_pairs, start):
        for table, rows in tables.items():
            store.upsert(table, rows)
        store.upsert("stage_stats", stage_rows(run.run_id, METHOD, name, stages))
