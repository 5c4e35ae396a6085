"""How well a region proposer finds the changes of a pair, and only the changes.

Two kinds of ground truth:

* rendered pairs (``--db``): the kept ``dig-render`` pairs of a database and their exact boxes
  (``regions`` rows with proposer ``render-gt``, status ``kept``). Proposals are matched to truths
  one-to-one (maximum bipartite matching) at IoU >= 0.5; recall = matched truths / truths,
  precision = matched proposals / proposals, summed over all pairs. The last line is
  ``recall@0.5 = X``.

      python benchmarks/proposer_recall.py --db ./data/pairsmith.lance [--proposer pair|diffmap|fastsam]

* real edited photos (``--marked``): a MED-format JSON (``--json``, images relative to it or to
  ``--images``) and a JSONL of hand-marked changed regions, one object a line: ``i`` (index into the
  JSON), ``boxes`` (``[x1, y1, x2, y2]`` as 0–1 fractions of the before image) and ``global: true``
  for whole-image edits. The marks are coarse, so scoring is lenient (the rule of the MED sample's
  README): a mark is found when a proposed box overlaps it with IoU >= 0.3 or each box's centre lies
  inside the other, and a proposed box is right when it finds some mark. Whole-image edits count in
  neither recall nor precision; they should get the global verdict and no boxes. The last line is
  ``recall = X precision = Y``.

      python benchmarks/proposer_recall.py --marked changed_regions.jsonl --json MED_bench.json [--images DIR]

Both modes run the ``propose-regions`` proposer (``models/proposers/pair_proposer.py``) with the settings of
``--config`` (a propose-regions YAML; default: that flow's defaults for photos, the ``RENDER`` preset
for rendered pairs) and keep the boxes at or above its ``min_confidence``. Both print recall,
precision, boxes per pair with a change, the whole-image verdicts and seconds per pair. Bad
arguments exit 2 with one line naming the file and the reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IOU_THRESHOLD = 0.5
LENIENT_IOU = 0.3
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
    cpu_seconds: float = 0.0  # this process's CPU time (wall time varies with the machine's load)
    global_pairs: int = 0  # pairs the proposer judged whole-image changes
    results: list[Found] = field(default_factory=list, repr=False)


@dataclass
class Found:
    """What a proposer returned for one pair: boxes (before-image pixels) and the extent verdict."""

    boxes: list[list[float]] = field(default_factory=list)
    extent: str | None = None  # "local" | "global" | None (no verdict)
    confidences: list[float] = field(default_factory=list)
    extent_reason: str | None = None
    extent_score: float | None = None


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


# ---- lenient scoring of coarse hand marks (fractions of the before image) ----

def lenient_hit(box: Box, mark: Box) -> bool:
    """The MED sample README's rule: IoU >= 0.3, or each box's centre lies inside the other."""
    from pairsmith.filters.imgdiff.nms import box_iou

    if box_iou([box], [mark])[0, 0] >= LENIENT_IOU:
        return True

    def centre_in(a: Box, b: Box) -> bool:
        cx, cy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
        return b[0] <= cx <= b[2] and b[1] <= cy <= b[3]

    return centre_in(box, mark) and centre_in(mark, box)


@dataclass
class MarkedItem:
    index: int
    before: Path
    after: Path
    marks: list[list[float]]  # fractions of the before image
    is_global: bool
    note: str = ""


@dataclass
class MarkedReport:
    local_items: int
    marks: int
    found: int
    boxes: int
    right: int
    global_items: int
    global_verdicts: int  # global items judged global
    global_boxes: int  # boxes proposed on global items
    false_global: int  # local items judged global
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    rows: list[dict] = field(default_factory=list)
    results: list[Found] = field(default_factory=list, repr=False)
    scored_boxes: list[tuple[float, bool]] = field(default_factory=list)  # (confidence, right) per local box

    def precision_at(self, confidence: float) -> tuple[float, int]:
        """Precision of the boxes at or above ``confidence``, and how many there are."""
        chosen = [right for c, right in self.scored_boxes if c >= confidence]
        return (sum(chosen) / len(chosen) if chosen else 0.0), len(chosen)

    @property
    def recall(self) -> float:
        return self.found / self.marks if self.marks else 0.0

    @property
    def precision(self) -> float:
        return self.right / self.boxes if self.boxes else 0.0

    @property
    def boxes_per_edit(self) -> float:
        return self.boxes / self.local_items if self.local_items else 0.0


def read_marked(marked: Path, json_path: Path, images: Path | None) -> list[MarkedItem]:
    """The marked items with their image files; ValueError (one line) on a bad file or entry."""
    from pairsmith.storage.input_files import inside_root
    from pairsmith.tasks.imports.base import BadEntry
    from pairsmith.tasks.imports.med_bench import MedBenchConfig, MedBenchImporter

    importer = MedBenchImporter()
    config = MedBenchConfig(json_path=str(json_path), images_dir=str(images) if images else None)
    entries = importer.read(config)

    def resolve_image(name: str) -> Path | None:
        """The image in the first of the importer's folders that has it (names stay inside them)."""
        for root in importer.image_roots(config):
            path = inside_root(root, name)
            if path.is_file():
                return path
        return None

    try:
        lines = marked.read_text().splitlines()
    except FileNotFoundError:
        raise ValueError(f"--marked {str(marked)!r}: no such file") from None
    items = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            index, boxes = int(raw["i"]), [[float(v) for v in b] for b in raw["boxes"]]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"--marked {str(marked)!r} line {n}: expected {{i, boxes}} ({type(err).__name__})") from None
        if not all(len(b) == 4 and 0 <= b[0] < b[2] <= 1 and 0 <= b[1] < b[3] <= 1 for b in boxes):
            raise ValueError(f"--marked {str(marked)!r} line {n}: boxes must be [x1, y1, x2, y2] fractions 0-1")
        if not 0 <= index < len(entries) or isinstance(entries[index], BadEntry):
            raise ValueError(f"--marked {str(marked)!r} line {n}: item {index} is not a valid entry of {json_path.name}")
        entry = entries[index]
        paths = [resolve_image(name) for name in (entry.before, entry.after)]
        if None in paths:
            raise ValueError(f"--marked {str(marked)!r} line {n}: images of item {index} not found")
        items.append(MarkedItem(index, paths[0], paths[1], boxes, bool(raw.get("global", False)), str(raw.get("note", ""))))
    if not items:
        raise ValueError(f"--marked {str(marked)!r}: no marked items")
    return items


def score_marked(items: Sequence[MarkedItem], found: Sequence[Found], sizes: Sequence[tuple[int, int]]) -> MarkedReport:
    """Lenient recall / precision over local items, and the verdicts on global ones."""
    report = MarkedReport(0, 0, 0, 0, 0, 0, 0, 0, 0)
    for item, f, (w, h) in zip(items, found, sizes):
        boxes = [[x1 / w, y1 / h, x2 / w, y2 / h] for x1, y1, x2, y2 in f.boxes]
        row = {"i": item.index, "global": item.is_global, "extent": f.extent, "boxes": len(boxes)}
        if item.is_global:
            report.global_items += 1
            report.global_verdicts += f.extent == "global"
            report.global_boxes += len(boxes)
        else:
            found_marks = sum(any(lenient_hit(b, m) for b in boxes) for m in item.marks)
            rights = [any(lenient_hit(b, m) for m in item.marks) for b in boxes]
            right = sum(rights)
            report.scored_boxes += list(zip(f.confidences or [1.0] * len(boxes), rights))
            report.local_items += 1
            report.marks += len(item.marks)
            report.found += found_marks
            report.boxes += len(boxes)
            report.right += right
            report.false_global += f.extent == "global"
            row |= {"marks": len(item.marks), "found": found_marks, "right": right}
        report.rows.append(row)
    return report


# ---- proposers ----

ProposeFn = Callable[[list[tuple]], list[Found]]


def load_proposer_settings(config_path: str | None, default_preset: str):
    """(PairProposerConfig, min_confidence) from a propose-regions YAML, or the preset's defaults."""
    from pairsmith.flows.propose_regions import ProposeRegionsConfig
    from pairsmith.models.proposers.pair_proposer import PRESETS

    if config_path is None:
        defaults = ProposeRegionsConfig()
        return PRESETS[default_preset], defaults.min_confidence
    import yaml
    from pydantic import ValidationError

    try:
        raw = yaml.safe_load(Path(config_path).read_text()) or {}
        config = ProposeRegionsConfig.model_validate({k: v for k, v in raw.items() if k != "db"})
    except FileNotFoundError:
        raise ValueError(f"--config {config_path!r}: no such file") from None
    except (yaml.YAMLError, ValidationError, AttributeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"--config {config_path!r}: {first}") from None
    return config.proposer, config.min_confidence


def pair_proposer(config, min_confidence: float) -> ProposeFn:
    from pairsmith.models.proposers.pair_proposer import PairProposer

    proposer = PairProposer(config)

    def propose(pairs: list[tuple]) -> list[Found]:
        out = []
        for p in proposer.propose_batch(pairs):
            kept = [(b, c) for b, c in zip(p.boxes, p.confidences) if c >= min_confidence]
            e = p.extent
            out.append(Found([b for b, _ in kept], e.extent if e else None, [c for _, c in kept],
                             e.reason if e else None, e.score if e else None))
        return out

    return propose


def diffmap_proposer() -> ProposeFn:
    """The bare object proposer on the raw pair (no registration, no verdict): the old baseline."""
    from pairsmith.models.proposers.diffmap_proposer import DiffMapProposer

    proposer = DiffMapProposer()
    return lambda pairs: [Found(p.boxes) for p in proposer.propose_batch(pairs)]


def fastsam_proposer(weights: str, cache_dir: str | None, device: str) -> ProposeFn:
    """Img-Diff's proposals: FastSAM segments of both images (aligned), as boxes on the before image."""
    from pairsmith.models.adapters.fastsam_proposer import FastSamConfig, FastSamProposer, resolve_weights
    from pairsmith.models.runtime import ModelRuntime

    runtime = ModelRuntime(device=device, cache_dir=cache_dir, offline=True)
    resolve_weights(weights, runtime)  # a missing checkpoint fails here, before any image is read
    proposer = FastSamProposer(FastSamConfig(weights=weights, runtime=runtime))

    def propose(pairs: list[tuple]) -> list[Found]:
        images = []
        for before, after in pairs:
            images += [before, after.resize(before.size) if after.size != before.size else after]
        found = proposer.propose_batch(images)
        return [Found(found[2 * i].box_list() + found[2 * i + 1].box_list()) for i in range(len(pairs))]

    return propose


# ---- rendered pairs ----

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


def run(truth_pairs: list[TruthPair], propose: ProposeFn, batch_size: int = 8) -> RecallReport:
    from pairsmith.storage.pair_images import open_image

    found: list[Found] = []
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(truth_pairs), batch_size):
        batch = truth_pairs[i:i + batch_size]
        found += propose([(open_image(p.before), open_image(p.after)) for p in batch])
    report = score([f.boxes for f in found], [p.boxes for p in truth_pairs])
    report.seconds, report.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    report.global_pairs = sum(f.extent == "global" for f in found)
    report.results = found
    return report


def run_marked(items: Sequence[MarkedItem], propose: ProposeFn) -> MarkedReport:
    from pairsmith.storage.pair_images import open_image

    found, sizes = [], []
    start, cpu = time.perf_counter(), time.process_time()
    for item in items:  # decoded as a viewer (and pairsmith's import) shows them: upright, 8-bit, alpha over white
        pair = (open_image(Path(item.before).read_bytes()), open_image(Path(item.after).read_bytes()))
        sizes.append(pair[0].size)
        found += propose([pair])
    report = score_marked(items, found, sizes)
    report.seconds, report.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    report.results = found
    return report


def _sheet_parts():
    """The sheet module beside this script (imported as ``benchmarks.`` from the tests, bare when run)."""
    try:
        from benchmarks.proposal_sheet import SheetPair, draw_sheet
    except ModuleNotFoundError:
        from proposal_sheet import SheetPair, draw_sheet
    return SheetPair, draw_sheet


def _sheet_order(is_global: Sequence[bool], n: int) -> list[int]:
    """Up to ``n`` indices: whole-image pairs first (at most half), then the others in order."""
    first = [i for i, g in enumerate(is_global) if g][: max(1, n // 2)]
    return (first + [i for i in range(len(is_global)) if i not in first])[:n]


def marked_sheet(items: Sequence[MarkedItem], report: MarkedReport, out: Path, n: int) -> None:
    from pairsmith.storage.pair_images import open_image

    SheetPair, draw_sheet = _sheet_parts()

    order = _sheet_order([it.is_global or f.extent == "global" for it, f in zip(items, report.results)], n)
    pairs = []
    for i in order:
        item, f = items[i], report.results[i]
        before, after = open_image(Path(item.before).read_bytes()), open_image(Path(item.after).read_bytes())
        w, h = before.size
        marks = [] if item.is_global else [[x1 * w, y1 * h, x2 * w, y2 * h] for x1, y1, x2, y2 in item.marks]
        pairs.append(SheetPair(f"item {item.index} ({item.note})" if item.note else f"item {item.index}", before, after,
                               f.boxes, f.confidences, marks, f.extent, f.extent_reason, f.extent_score))
    draw_sheet(pairs, out, "red: proposed boxes with confidence; green: hand marks; orange frame: judged whole-image")


def render_sheet(truth_pairs: Sequence[TruthPair], report: RecallReport, out: Path, n: int) -> None:
    SheetPair, draw_sheet = _sheet_parts()
    from pairsmith.storage.pair_images import open_image

    order = _sheet_order([f.extent == "global" for f in report.results], n)
    pairs = [SheetPair(f"pair {truth_pairs[i].pair_id[:8]}", open_image(truth_pairs[i].before),
                       open_image(truth_pairs[i].after), report.results[i].boxes, report.results[i].confidences,
                       truth_pairs[i].boxes, report.results[i].extent, report.results[i].extent_reason,
                       report.results[i].extent_score) for i in order]
    draw_sheet(pairs, out, "red: proposed boxes with confidence; green: exact render boxes; orange frame: judged whole-image")


def _print_marked(report: MarkedReport, items: Sequence[MarkedItem], verbose: bool) -> None:
    n = len(items)
    if verbose:
        notes = {it.index: it.note for it in items}
        for row in report.rows:
            if row["global"]:
                print(f"  item {row['i']:>3} whole-image  verdict {row['extent']}, {row['boxes']} boxes  {notes[row['i']]}")
            else:
                print(f"  item {row['i']:>3} found {row['found']}/{row['marks']} marks, {row['right']}/{row['boxes']} boxes right"
                      f"  {notes[row['i']]}")
    print(f"{n} marked pairs ({report.local_items} localised edits with {report.marks} marked regions, "
          f"{report.global_items} whole-image edits), {report.seconds:.1f} s ({report.seconds / max(n, 1):.2f} s/pair, "
          f"{report.cpu_seconds / max(n, 1):.2f} s/pair CPU)")
    print(f"localised edits: recall {report.recall:.3f}  precision {report.precision:.3f}  "
          f"boxes per edit {report.boxes_per_edit:.2f}  ({report.found} of {report.marks} marks found, "
          f"{report.right} of {report.boxes} boxes right; {report.false_global} judged whole-image)")
    if any(c < 1.0 for c, _ in report.scored_boxes):
        levels = "  ".join(f">= {t:.1f}: {p:.3f} ({n} boxes)" for t in (0.3, 0.5, 0.7) for p, n in [report.precision_at(t)])
        print(f"precision by box confidence: {levels}")
    print(f"whole-image edits: {report.global_verdicts} of {report.global_items} judged global, "
          f"{report.global_boxes} boxes on them")
    print(f"recall = {report.recall:.3f} precision = {report.precision:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Rendered pairs: --db URI (last line 'recall@0.5 = X'). Real edited photos: --marked FILE "
               "--json FILE [--images DIR] (last line 'recall = X precision = Y').",
    )
    parser.add_argument("--db", default=None, help="LanceDB URI holding dig-render pairs (rendered mode)")
    parser.add_argument("--marked", default=None, help="JSONL of hand-marked changed regions (real-photo mode)")
    parser.add_argument("--json", default=None, help="real-photo mode: the MED-format JSON the marks index into")
    parser.add_argument("--images", default=None, help="real-photo mode: folder the image names are relative to")
    parser.add_argument("--config", default=None, help="a propose-regions YAML whose proposer and min_confidence to use")
    parser.add_argument("--proposer", choices=["pair", "diffmap", "fastsam"], default="pair",
                        help="pair: the propose-regions proposer (default); diffmap: bare object proposer; fastsam")
    parser.add_argument("--run", default=None, help="rendered mode: only this dig-render run")
    parser.add_argument("--limit", type=int, default=None, help="at most this many pairs")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--verbose", action="store_true", help="real-photo mode: one line per item")
    parser.add_argument("--sheet", default=None, help="also draw a contact sheet of the proposals to this PNG/JPEG")
    parser.add_argument("--sheet-n", type=int, default=10, help="pairs on the sheet (whole-image verdicts first)")
    parser.add_argument("--weights", default="FastSAM-x.pt", help="fastsam: checkpoint path or file name in --cache-dir")
    parser.add_argument("--cache-dir", default=None, help="fastsam: folder holding the checkpoint")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="fastsam: torch device")
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"proposer_recall: error: {message}", file=sys.stderr)
        return 2

    if (args.db is None) == (args.marked is None):
        return fail("give either --db (rendered pairs) or --marked with --json (real edited photos)")
    if args.marked is not None and args.json is None:
        return fail("--marked needs --json, the MED-format file its 'i' indices point into")
    try:
        if args.proposer == "pair":
            config, min_confidence = load_proposer_settings(args.config, "render" if args.db else "photo")
            propose = pair_proposer(config, min_confidence)
        elif args.proposer == "diffmap":
            propose = diffmap_proposer()
        else:
            propose = fastsam_proposer(args.weights, args.cache_dir, args.device)
    except FileNotFoundError as err:
        return fail(f"{err}; pass --weights PATH to a FastSAM checkpoint")
    except ValueError as err:
        return fail(str(err))

    if args.marked is not None:
        try:
            items = read_marked(Path(args.marked), Path(args.json), Path(args.images) if args.images else None)
        except ValueError as err:
            return fail(str(err))
        items = items[: args.limit] if args.limit else items
        report = run_marked(items, propose)
        if args.sheet:
            marked_sheet(items, report, Path(args.sheet), args.sheet_n)
        _print_marked(report, items, args.verbose)
        return 0

    if "://" not in args.db and not Path(args.db).exists():
        return fail(f"--db {args.db!r}: no such database")
    pairs = load_truth_pairs(args.db, args.run, args.limit)
    if not pairs:
        return fail(f"no kept dig-render pairs in {args.db!r}; run 'pairsmith render' first")
    report = run(pairs, propose, args.batch_size)
    if args.sheet:
        render_sheet(pairs, report, Path(args.sheet), args.sheet_n)
    changed = sum(1 for p in pairs if p.boxes)
    print(f"proposer {args.proposer} on {report.pairs} pairs, {report.truths} true regions, "
          f"{report.proposals} proposals, {report.seconds:.1f} s ({report.seconds / report.pairs:.2f} s/pair, "
          f"{report.cpu_seconds / report.pairs:.2f} s/pair CPU)")
    print(f"per pair (mean): recall {report.pair_recall:.3f}  precision {report.pair_precision:.3f}")
    print(f"overall:         recall {report.recall:.3f}  precision {report.precision:.3f}  "
          f"({report.matched} matched at IoU >= {IOU_THRESHOLD}); boxes per changed pair "
          f"{report.proposals / max(changed, 1):.2f} (true {report.truths / max(changed, 1):.2f}); "
          f"{report.global_pairs} pairs judged whole-image")
    print(f"precision@0.5 = {report.precision:.3f}")
    print(f"recall@0.5 = {report.recall:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
