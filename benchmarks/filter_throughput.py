"""Crop scoring throughput: all crops of a batch in one CLIP + one BLIP call, versus one crop at a time.

Runs the imgdiff-replace flow's own crop-scoring step (``pairsmith.tasks.imgdiff.crop_filter.crop_filter``:
CLIP crop-vs-crop cosine and BLIP ITM of each crop against its noun) on tiny random CLIP and BLIP
models built here, loaded through the same loaders as the hub models, over ``--pairs`` pairs of
random images with ``--boxes`` boxes each:

* batched: every crop of every pair in one call of the step (what the flow does per batch);
* one at a time: the step called once per box, as a per-crop loop would.

    python benchmarks/filter_throughput.py [--pairs 8] [--boxes 32] [--repeat 3] [--threads 1]

Prints crops/s for both and the speed-up (target: >= 5x). On a GPU the gap is wider still: a
forward of 64 crops costs about what a forward of one does.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np



def _items(n_pairs: int, n_boxes: int, seed: int = 0):
    from PIL import Image

    from pairsmith.models.adapters.caption_answer import CaptionRewrite
    from pairsmith.tasks.imgdiff.items import ImgDiffItem, RegionCandidate

    rng = np.random.default_rng(seed)
    items = []
    for p in range(n_pairs):
        before = Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
        after = Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
        regions = []
        for b in range(n_boxes):
            x1, y1 = (float(v) for v in rng.integers(0, 192, 2))
            w, h = (float(v) for v in rng.integers(16, 64, 2))
            regions.append(RegionCandidate(region_id=f"{p}-{b}", box=[x1, y1, x1 + w, y1 + h], proposer="fastsam"))
        rewrite = CaptionRewrite("a cat on a sofa", "a dog on a sofa", "cat", "dog", "living_thing")
        items.append(ImgDiffItem(index=p, pair_id=f"pair-{p}", seed=p, rewrite=rewrite, before=before,
                                 after=after, regions=regions))
    return items


def _fresh(items):
    """The same pairs with every region alive and unscored again."""
    import copy

    out = copy.copy(items)
    for k, item in enumerate(out):
        out[k] = copy.copy(item)
        out[k].regions = [copy.copy(r) for r in item.regions]
        for r in out[k].regions:
            r.reason, r.scores = None, {}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--boxes", type=int, default=32, help="boxes per pair")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many timings")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)

    import torch

    from pairsmith.filters.imgdiff.pipelines import ReplaceThresholds
    from pairsmith.models.adapters.blip_itm import BlipItmConfig, BlipItmScorer
    from pairsmith.models.adapters.clip_scorer import ClipScorer, ClipScorerConfig
    from pairsmith.models.runtime import ModelRuntime
    from pairsmith.models.tiny.builders import build_tiny_blip_itm, build_tiny_clip
    from pairsmith.tasks.imgdiff.crop_filter import crop_filter
    from pairsmith.tasks.imgdiff.context import ImgDiffContext, ImgDiffModels

    torch.set_num_threads(args.threads)
    cpu = ModelRuntime(device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        tiny_clip = build_tiny_clip(Path(tmp) / "clip")
        clip = ClipScorer(ClipScorerConfig(model_name=tiny_clip.model_name, pretrained=str(tiny_clip.weights),
                                           model_config_file=str(tiny_clip.config_file), runtime=cpu, batch_size=256))
        blip = BlipItmScorer(BlipItmConfig(model_id=str(build_tiny_blip_itm(Path(tmp) / "blip")), runtime=cpu,
                                           batch_size=256))
        ctx = ImgDiffContext(ReplaceThresholds(), ImgDiffModels(clip=clip, blip=blip))
        items = _items(args.pairs, args.boxes)
        n_crops = args.pairs * args.boxes
        crop_filter.fn(_fresh(items[:1]), ctx)  # load both models before timing

        singles = []  # one pair per box, each holding only that box
        for item in _fresh(items):
            for region in item.regions:
                single = _fresh([item])[0]
                single.regions = [r for r in single.regions if r.region_id == region.region_id]
                singles.append(single)

        def batched() -> None:
            crop_filter.fn(_fresh(items), ctx)

        def one_at_a_time() -> None:
            for single in singles:
                single.regions[0].drop_reason = None
                crop_filter.fn([single], ctx)

        timings = {}
        for name, run in (("batched", batched), ("one at a time", one_at_a_time)):
            best = float("inf")
            for _ in range(args.repeat):
                start = time.perf_counter()
                run()
                best = min(best, time.perf_counter() - start)
            timings[name] = best
    rate = {name: n_crops / seconds for name, seconds in timings.items()}
    print(f"crop scoring (CLIP crop cosine + BLIP ITM x2) on tiny models, CPU, {args.threads} thread(s): "
          f"{args.pairs} pairs x {args.boxes} boxes = {n_crops} crops")
    print(f"batched:       {rate['batched']:9.1f} crops/s ({timings['batched']:.3f} s)")
    print(f"one at a time: {rate['one at a time']:9.1f} crops/s ({timings['one at a time']:.3f} s)")
    print(f"speed-up = {rate['batched'] / rate['one at a time']:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
