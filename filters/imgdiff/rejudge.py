"""Re-apply Img-Diff thresholds to the stored scores of a run's pairs and regions.

This is Img-Diff's threshold ablation as a pure function: the rows a flow stored (scores and
verdicts, dropped candidates included) go in, new verdicts and one ``StageStats`` per stage come
out. No model runs, so only what the scores can decide changes:

* A pair or region dropped by a step other than a threshold (a failed generation, a model error)
  keeps its verdict and stays out of the funnel.
* A row missing a score a stage needs is *not re-judged*: its stored verdict stays, and the
  stage counts it as ``<stage>_not_rejudged`` (it cannot be followed further).
* A row that passes every threshold but whose later model outputs were never made (because the
  original run dropped it) cannot become kept without a re-run: it drops as
  ``refilter_needs_rerun``. So with the original thresholds, refiltering changes nothing; with
  stricter ones it narrows the data; with looser ones it counts what a re-run would add.

Rows are plain dicts with the columns of ``pairsmith.storage.schemas.PairRow`` / ``RegionRow``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pairsmith.filters.imgdiff import stages as st
from pairsmith.filters.imgdiff.box_area import keep_box_area
from pairsmith.filters.imgdiff.box_nms import nms_most_different_first
from pairsmith.filters.imgdiff.crop_difference import keep_crop
from pairsmith.filters.imgdiff.thresholds import ImgDiffThresholds
from pairsmith.filters.imgdiff.object_removal import keep_removal_crop, keep_removal_itm
from pairsmith.filters.imgdiff.pair_similarity import keep_pair
from pairsmith.filters.imgdiff.region_captions import keep_region_captions
from pairsmith.filters.scores import is_missing
from pairsmith.storage.verdict import KEEP, StageStats, Verdict

REPLACE, REMOVE = st.METHODS
# What a region must carry, beyond its scores, to be kept: the outputs of the steps after the filters.
REGION_OUTPUT_COLUMNS: dict[str, tuple[str, ...]] = {REPLACE: ("difference_caption",), REMOVE: ()}
STAGE_ORDER = (
    st.PAIR_FILTER, *st.REPLACE_REGION_STAGES, *st.REMOVE_REGION_STAGES, st.REGION_OUTPUTS, st.REGIONS,
)
STAGES_OF: dict[str, tuple[str, ...]] = {
    REPLACE: (st.PAIR_FILTER, *st.REPLACE_REGION_STAGES, st.REGION_OUTPUTS, st.REGIONS),
    REMOVE: (*st.REMOVE_REGION_STAGES, st.REGIONS),
}


def pair_columns() -> list[str]:
    """The pairs columns re-judging reads (no image bytes)."""
    return ["pair_id", "method", "width", "height", "pair_clip_sim", "status", "drop_stage", "drop_reason"]


def region_columns(thresholds: ImgDiffThresholds) -> list[str]:
    """The regions columns re-judging reads under these thresholds."""
    cols = ["region_id", "pair_id", "box", "status", "reason", "crop_clip_sim", "caption_sim"]
    cols += [*thresholds.replace.bitm_columns(), *thresholds.replace.citm_columns(), *thresholds.remove.itm_columns()]
    cols += [c for cs in REGION_OUTPUT_COLUMNS.values() for c in cs]
    return list(dict.fromkeys(cols))


@dataclass
class RejudgeResult:
    """New verdicts (only rows whose verdict changed) and what every stage did."""

    pair_updates: dict[str, dict] = field(default_factory=dict)  # pair_id -> status, drop_stage, drop_reason
    region_updates: dict[str, dict] = field(default_factory=dict)  # region_id -> status, reason
    stages: dict[str, StageStats] = field(default_factory=dict)
    pairs_rejudged: int = 0
    regions_rejudged: int = 0
    not_rejudged: Counter = field(default_factory=Counter)  # "regions: citm_before missing" -> count
    left_alone: Counter = field(default_factory=Counter)  # "pairs dropped at generate" -> count

    def record(self, stage: str, verdict: Verdict) -> None:
        self.stages.setdefault(stage, StageStats(stage)).record(verdict)

    def ordered_stages(self, methods: set[str] | None = None) -> list[StageStats]:
        """The stages in pipeline order; with ``methods``, every stage they have, empty ones included,
        so that each batch lists the same stages in the same order."""
        wanted = set(self.stages)
        for method in methods or ():
            wanted |= set(STAGES_OF.get(method, ()))
        return [self.stages.get(s) or StageStats(s) for s in STAGE_ORDER if s in wanted]


def _threshold_decided_pair(pair: dict) -> bool:
    return pair["status"] == "kept" or pair["drop_stage"] in st.THRESHOLD_PAIR_STAGES


def _threshold_decided_region(region: dict) -> bool:
    return region["status"] == "kept" or region["reason"] in st.THRESHOLD_REASONS


class _PairJudge:
    """Re-judges one pair and its regions, writing into a shared RejudgeResult."""

    def __init__(self, result: RejudgeResult, thresholds: ImgDiffThresholds):
        self.result = result
        self.t = thresholds

    def _missing(self, kind: str, stage: str, row: dict, columns: tuple[str, ...]) -> bool:
        gone = [c for c in columns if is_missing(row.get(c))]
        if not gone:
            return False
        for c in gone:
            self.result.not_rejudged[f"{kind}: {c} missing at {stage}"] += 1
        self.result.record(stage, Verdict.drop(f"{stage}_not_rejudged"))
        return True

    def _set_region(self, region: dict, verdict: Verdict) -> None:
        self.result.regions_rejudged += 1  # called once per region, with its final verdict
        new = {"status": "kept" if verdict.keep else "dropped", "reason": verdict.reason}
        if (region["status"], region["reason"]) != (new["status"], new["reason"]):
            self.result.region_updates[region["region_id"]] = new
        region["_final"] = new["status"]

    def judge(self, pair: dict, regions: list[dict], has_samples: bool) -> None:
        method = pair["method"]
        if method not in st.METHODS:
            self.result.left_alone[f"pairs of method {method}"] += 1
            return
        if not _threshold_decided_pair(pair):
            self.result.left_alone[f"pairs dropped at {pair['drop_stage']}"] += 1
            return
        if method == REPLACE and self._missing("pairs", st.PAIR_FILTER, pair, ("pair_clip_sim",)):
            return
        self.result.pairs_rejudged += 1
        if method == REPLACE:
            verdict = keep_pair(pair["pair_clip_sim"], self.t.replace)
            self.result.record(st.PAIR_FILTER, verdict)
            if not verdict.keep:
                self._finish_pair(pair, st.PAIR_FILTER, verdict.reason)
                for region in regions:  # a pair outside the window has no regions in a flow run
                    if _threshold_decided_region(region):
                        self._set_region(region, verdict)
                return
        judged = []
        for region in regions:
            if _threshold_decided_region(region):
                judged.append(region)
            else:
                self.result.left_alone[f"regions dropped as {region['reason']}"] += 1
        alive = self._region_stages(method, pair, judged)
        alive = self._region_outputs(method, alive)
        n_kept = sum(1 for r in regions if r.get("_final", r["status"]) == "kept")
        needs_rerun = any(r.get("_final_reason") == st.NEEDS_RERUN for r in judged)
        self._regions_stage(pair, regions, n_kept, needs_rerun, has_samples)

    def _region_stages(self, method: str, pair: dict, regions: list[dict]) -> list[dict]:
        alive = regions
        if method == REPLACE:
            r = self.t.replace
            alive = self._each(st.BOX_AREA, alive, (), lambda g: keep_box_area(g["box"], pair["width"], pair["height"], r))
            cols = ("crop_clip_sim", *r.bitm_columns())
            alive = self._each(st.CROP_FILTER, alive, cols, lambda g: keep_crop(*(g[c] for c in cols), r))
            alive = self._nms(alive)
            cols_c = (*r.citm_columns(), "caption_sim")
            alive = self._each(st.CAPTION_FILTER, alive, cols_c, lambda g: keep_region_captions(*(g[c] for c in cols_c), r))
        else:
            m = self.t.remove
            alive = self._each(st.REMOVAL_CROP, alive, ("crop_clip_sim",), lambda g: keep_removal_crop(g["crop_clip_sim"], m))
            cols = m.itm_columns()
            alive = self._each(st.REMOVAL_ITM, alive, cols, lambda g: keep_removal_itm(*(g[c] for c in cols), m))
        return alive

    def _each(self, stage: str, regions: list[dict], needs: tuple[str, ...], judge) -> list[dict]:
        alive = []
        for region in regions:
            if self._missing("regions", stage, region, needs):
                region["_final"] = region["status"]
                continue
            verdict = judge(region)
            self.result.record(stage, verdict)
            if verdict.keep:
                alive.append(region)
            else:
                self._set_region(region, verdict)
        return alive

    def _nms(self, regions: list[dict]) -> list[dict]:
        ordered = sorted(regions, key=lambda g: g["region_id"])
        nms = nms_most_different_first([g["box"] for g in ordered], [g["crop_clip_sim"] for g in ordered], self.t.replace)
        for i, region in enumerate(ordered):
            verdict = nms.dropped.get(i, KEEP)
            self.result.record(st.NMS, verdict)
            if not verdict.keep:
                self._set_region(region, verdict)
        return [ordered[i] for i in nms.kept]

    def _region_outputs(self, method: str, regions: list[dict]) -> list[dict]:
        needs = REGION_OUTPUT_COLUMNS[method]
        alive = []
        for region in regions:
            verdict = KEEP
            if needs and any(region.get(c) is None for c in needs):
                verdict = Verdict.drop(st.NEEDS_RERUN)
                region["_final_reason"] = st.NEEDS_RERUN
            if needs:
                self.result.record(st.REGION_OUTPUTS, verdict)
            self._set_region(region, verdict)
            if verdict.keep:
                alive.append(region)
        return alive

    def _regions_stage(self, pair: dict, regions: list[dict], n_kept: int, needs_rerun: bool, has_samples: bool) -> None:
        if n_kept and has_samples:
            verdict = KEEP
        elif n_kept or needs_rerun:
            verdict = Verdict.drop(st.NEEDS_RERUN)
        elif not regions and (pair["drop_stage"] == st.PAIR_FILTER or pair["drop_reason"] == st.NEEDS_RERUN):
            verdict = Verdict.drop(st.NEEDS_RERUN)  # it stopped at the pair filter: nothing was ever proposed
        else:
            verdict = Verdict.drop(st.NO_REGION_KEPT)
        self.result.record(st.REGIONS, verdict)
        self._finish_pair(pair, None if verdict.keep else st.REGIONS, verdict.reason)

    def _finish_pair(self, pair: dict, stage: str | None, reason: str | None) -> None:
        new = {"status": "kept" if reason is None else "dropped", "drop_stage": stage, "drop_reason": reason}
        if (pair["status"], pair["drop_stage"], pair["drop_reason"]) != tuple(new.values()):
            self.result.pair_updates[pair["pair_id"]] = new


def rejudge_pairs(
    pairs: list[dict],
    regions: list[dict],
    pairs_with_samples: set[str],
    thresholds: ImgDiffThresholds,
) -> RejudgeResult:
    """New verdicts for ``pairs`` and their ``regions`` under ``thresholds``.

    ``pairs_with_samples``: ids of pairs whose training samples exist; a pair without them cannot
    be kept by re-filtering alone. The input dicts are not modified.
    """
    by_pair: dict[str, list[dict]] = {}
    for region in regions:
        by_pair.setdefault(region["pair_id"], []).append(dict(region))
    result = RejudgeResult()
    judge = _PairJudge(result, thresholds)
    for pair in sorted(pairs, key=lambda p: p["pair_id"]):
        judge.judge(dict(pair), by_pair.get(pair["pair_id"], []), pair["pair_id"] in pairs_with_samples)
    return result
