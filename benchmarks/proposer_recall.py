"""How many true changed regions a region proposer finds, on rendered scene pairs with exact boxes.

Reads the kept ``dig-render`` pairs of a database and their ground-truth regions (``regions``
rows with proposer ``render-gt`` and status ``kept``), runs a proposer on the image pairs, and
matches proposals to truths one-to-one (maximum bipartite matching) at IoU >= 0.5:

* recall = matched truths / truths, precision = matched proposals / proposals, both summed over
  all pairs ("overall") and averaged per pair (pairs without truths count for precision only,
  pairs without proposals for recall only).

    python benchmarks/proposer_recall.py --db ./data/pairsmith.lance [--proposer diffmap|fastsam]

The last line is ``recall@0.5 = X`` (overall recall), for scripts to read.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


IOU_THRESHOLD = 0.5
Box = Sequence[float]


@dataclass
class TruthPair:
    pair_id: str
    before: bytes
    after: bytes
    boxes: list[list[float]]


@dataclass
class RecallReport:
    pairs: int
    truths: int
    proposals: int
    matched: int
    recall: float  # overall
    precision: float
    pair_recall: float  # mean over pairs with truths
    pair_precision: float  # mean over pairs with proposals
    seconds: float = 0.0


def match_count(proposals: Sequence[Box], truths: Sequence[Box], iou_threshold: float = IOU_THRESHOLD) -> int:
    """Most truths that distinct proposals cover with IoU >= the threshold (one proposal per truth)."""
    if len(proposals) == 0 or len(truths) == 0:
        return 0
    from scipy.optimize import linear_sum_assignment

    from pairsmith.filters.imgdiff.nms import box_iou

    hits = box_iou(truths, proposals) >= iou_threshold
    rows, cols = linear_sum_assignment(hits, maximize=True)
    return int(hits[rows, cols].sum())


def score(proposals: Sequence[Sequence[Box]], truths: Sequence[Sequence[Box]], iou_threshold: float = IOU_THRESHOLD) -> RecallReport:
    """Recall and precision of per-pair proposal lists against per-pair truth lists."""
    if len(proposals) != len(truths):
        raise ValueError(f"{len(proposals)} proposal lists for {len(truths)} pairs")
    matched = [match_count(p, t, iou_threshold) for p, t in zip(proposals, truths)]
    n_truth = sum(len(t) for t in truths)
    n_prop = sum(len(p) for p in proposals)
    per_recall = [m / len(t) for m, t in zip(matched, truths) if t]
    per_precision = [m / len(p) for m, p in zip(matched, proposals) if p]
    return RecallReport(
        pairs=len(truths), truths=n_truth, proposals=n_prop, matched=sum(matched),
        recall=sum(matched) / n_truth if n_truth else 0.0,
        precision=sum(matched) / n_prop if n_prop else 0.0,
        pair_recall=float(np.mean(per_recall)) if per_recall else 0.0,
        pair_precision=float(np.mean(per_precision)) if per_precision else 0.0,
    )


def load_truth_pairs(db: str, run_id: str | None = None, limit: int | None = None) -> list[TruthPair]:
    """Kept dig-render pairs with their kept ground-truth boxes, in pair-id order."""
    from pairsmith.storage.store import PairStore, sql_in, sql_literal

    store = PairStore(db)
    where = "method = 'dig-render' AND status = 'kept'"
    if run_id:
        where += f" AND run_id = {sql_literal(run_id)}"
    ids = sorted(store.read("pairs", where=where, columns=["pair_id"]).column("pair_id").to_pylist())[:limit]
    out: list[TruthPair] = []
    for start in range(0, len(ids), 200):
        chunk = ids[start:start + 200]
        rows = store.read("pairs", where=sql_in("pair_id", chunk), columns=["pair_id", "image_before", "image_after"])
        regions = store.read(
            "regions", where=f"{sql_in('pair_id', chunk)} AND proposer = 'render-gt' AND status = 'kept'",
            columns=["pair_id", "box"],
        ).to_pylist()
        boxes: dict[str, list[list[float]]] = {}
        for r in regions:
            boxes.setdefault(r["pair_id"], []).append(list(r["box"]))
        for row in sorted(rows.to_pylist(), key=lambda r: r["pair_id"]):
            if row["image_before"] and row["image_after"]:
                out.append(TruthPair(row["pair_id"], row["image_before"], row["image_after"], boxes.get(row["pair_id"], [])))
    return out


ProposeFn = Callable[[list[tuple]], list[list[list[float]]]]


def diffmap_proposer() -> ProposeFn:
    from pairsmith.models.diffmap_proposer import DiffMapProposer

    proposer = DiffMapProposer()
    return lambda pairs: [p.boxes for p in proposer.propose_batch(pairs)]


def fastsam_proposer(weights: str, cache_dir: str | None, device: str) -> ProposeFn:
    """Img-Diff's proposals: FastSAM segments of both images (aligned), as boxes on the before image."""
    from pairsmith.models.fastsam_proposer import FastSamConfig, FastSamProposer, resolve_weights
    from pairsmith.models.runtime import ModelRuntime

    runtime = ModelRuntime(device=device, cache_dir=cache_dir, offline=True)
    resolve_weights(weights, runtime)  # a missing checkpoint fails here, before any image is read
    proposer = FastSamProposer(FastSamConfig(weights=weights, runtime=runtime))

    def propose(pairs: list[tuple]) -> list[list[list[float]]]:
        images = []
        for before, after in pairs:
            images += [before, after.resize(before.size) if after.size != before.size else after]
        found = proposer.propose_batch(images)
        return [found[2 * i].box_list() + found[2 * i + 1].box_list() for i in range(len(pairs))]

    return propose


def run(truth_pairs: list[TruthPair], propose: ProposeFn, batch_size: int = 8) -> RecallReport:
    from pairsmith.storage.pair_images import open_image

    proposals: list[list[list[float]]] = []
    start = time.perf_counter()
    for i in range(0, len(truth_pairs), batch_size):
        batch = truth_pairs[i:i + batch_size]
        proposals += propose([(open_image(p.before), open_image(p.after)) for p in batch])
    report = score(proposals, [p.boxes for p in truth_pairs])
    report.seconds = time.perf_counter() - start
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="LanceDB URI holding dig-render pairs")
    parser.add_argument("--proposer", choices=["diffmap", "fastsam"], default="diffmap")
    parser.add_argument("--run", default=None, help="only this dig-render run (default: every kept dig-render pair)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many pairs")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--weights", default="FastSAM-x.pt", help="fastsam: checkpoint path or file name in --cache-dir")
    parser.add_argument("--cache-dir", default=None, help="fastsam: folder holding the checkpoint")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="fastsam: torch device")
    args = parser.parse_args(argv)

    try:
        if args.proposer == "diffmap":
            propose = diffmap_proposer()
        else:
            propose = fastsam_proposer(args.weights, args.cache_dir, args.device)
    except FileNotFoundError as err:
        print(f"proposer_recall: error: {err}; pass --weights PATH to a FastSAM checkpoint", file=sys.stderr)
        return 2
    if "://" not in args.db and not Path(args.db).exists():
        print(f"proposer_recall: error: --db {args.db!r}: no such database", file=sys.stderr)
        return 2
    pairs = load_truth_pairs(args.db, args.run, args.limit)
    if not pairs:
        print(f"proposer_recall: error: no kept dig-render pairs in {args.db!r}; run 'pairsmith render' first", file=sys.stderr)
        return 2
    report = run(pairs, propose, args.batch_size)
    print(f"proposer {args.proposer} on {report.pairs} pairs, {report.truths} true regions, "
          f"{report.proposals} proposals, {report.seconds:.1f} s ({report.seconds / report.pairs * 1000:.0f} ms/pair)")
    print(f"per pair (mean): recall {report.pair_recall:.3f}  precision {report.pair_precision:.3f}")
    print(f"overall:         recall {report.recall:.3f}  precision {report.precision:.3f}  "
          f"({report.matched} matched at IoU >= {IOU_THRESHOLD})")
    print(f"precision@0.5 = {report.precision:.3f}")
    print(f"recall@0.5 = {report.recall:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
