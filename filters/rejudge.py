"""Re-apply thresholds to the stored scores of a run's pairs and regions, for any pipeline whose verdicts are stored.

This is Img-Diff's threshold ablation as a pure function, for every pipeline registered in
``pairsmith.filters.refilterable`` (Img-Diff's two, med-edit's similarity filter): the rows a flow stored (scores and
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

The stages and their order come from the pipeline declarations (``pairsmith.filters.refilterable``
lists them): a pair is re-judged by walking its method's filters in order, each with the keep rule
the flow applied, then its pipeline's closing pair stage (Img-Diff's ``regions``: a pair keeps a
region; ``pair_outputs`` for a pipeline without region filters: a pair has its samples). Rows are
plain dicts with the columns of ``pairsmith.storage.schemas.PairRow`` / ``RegionRow``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pairsmith.filters.imgdiff.pipelines import NO_REGION_KEPT
from pairsmith.filters.pipeline import NEEDS_RERUN, PAIR, PAIR_REGIONS, Stage
from pairsmith.filters.refilterable import STORED, RefilterThresholds, StoredPipeline, rejudge_order
from pairsmith.filters.scores import is_missing
from pairsmith.storage.verdict import KEEP, StageStats, Verdict

PAIR_COLUMNS = ["pair_id", "method", "width", "height", "status", "drop_stage", "drop_reason"]
REGION_COLUMNS = ["region_id", "pair_id", "box", "status", "reason"]


def pair_columns(thresholds: RefilterThresholds) -> list[str]:
    """The pairs columns re-judging reads under these thresholds (no image bytes)."""
    cols = [c for p in STORED.values() for s in p.pipeline.filters if s.level == PAIR
            for c in s.needs(p.thresholds(thresholds))]
    return list(dict.fromkeys(PAIR_COLUMNS + cols))


def region_columns(thresholds: RefilterThresholds) -> list[str]:
    """The regions columns re-judging reads under these thresholds."""
    cols = [c for p in STORED.values() for s in p.pipeline.filters if s.level != PAIR
            for c in s.needs(p.thresholds(thresholds))]
    cols += [c for p in STORED.values() if p.has_regions for c in p.pipeline.outputs()]
    return list(dict.fromkeys(REGION_COLUMNS + cols))


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
        wanted = set(self.stages) | set(rejudge_order(sorted(methods))) if methods else set(self.stages)
        optional = {s.name for spec in STORED.values() for s in spec.pipeline.filters if s.optional}
        return [self.stages.get(s) or StageStats(s) for s in rejudge_order() if s in wanted
                and (s in self.stages or s not in optional)]  # an optional filter that was off: not listed


def _threshold_decided_pair(spec: StoredPipeline, pair: dict) -> bool:
    return pair["status"] == "kept" or pair["drop_stage"] in spec.threshold_pair_stages


def _threshold_decided_region(spec: StoredPipeline, region: dict) -> bool:
    return region["status"] == "kept" or region["reason"] in spec.threshold_reasons


class _PairJudge:
    """Re-judges one pair and its regions by walking its pipeline, writing into a shared RejudgeResult."""

    def __init__(self, result: RejudgeResult, thresholds: RefilterThresholds):
        self.result = result
        self.thresholds = thresholds

    def _missing(self, kind: str, stage: Stage, row: dict, t) -> bool:
        gone = [c for c in stage.needs(t) if is_missing(row.get(c))]
        if not gone:
            return False
        for c in gone:
            self.result.not_rejudged[f"{kind}: {c} missing at {stage.name}"] += 1
        self.result.record(stage.name, Verdict.drop(f"{stage.name}_not_rejudged"))
        return True

    def _set_region(self, region: dict, verdict: Verdict) -> None:
        self.result.regions_rejudged += 1  # called once per region, with its final verdict
        new = {"status": "kept" if verdict.keep else "dropped", "reason": verdict.reason}
        if (region["status"], region["reason"]) != (new["status"], new["reason"]):
            self.result.region_updates[region["region_id"]] = new
        region["_final"] = new["status"]

    def judge(self, pair: dict, regions: list[dict], has_samples: bool) -> None:
        """Walk the pair's pipeline: its pair filters, then its region filters in order, then the
        outputs check and the closing pair-level stage."""
        spec = STORED.get(pair["method"])
        if spec is None:
            self.result.left_alone[f"pairs of method {pair['method']}"] += 1
            return
        if not _threshold_decided_pair(spec, pair):
            self.result.left_alone[f"pairs dropped at {pair['drop_stage']}"] += 1
            return
        pipeline, t = spec.pipeline, spec.thresholds(self.thresholds)
        pair_stages = [s for s in pipeline.filters if s.level == PAIR and not s.off(t)]
        if any(self._missing("pairs", s, pair, t) for s in pair_stages):
            return
        self.result.pairs_rejudged += 1
        if not self._pair_stages(spec, pair_stages, pair, regions, t):
            return
        if not spec.has_regions:
            self._pair_outputs(spec, pair, has_samples)
            return
        judged = []
        for region in regions:
            if _threshold_decided_region(spec, region):
                region["width"], region["height"] = pair["width"], pair["height"]  # what box rules read
                judged.append(region)
            else:
                self.result.left_alone[f"regions dropped as {region['reason']}"] += 1
        alive = judged
        for s in pipeline.filters:
            if s.level != PAIR and not s.off(t):
                alive = self._region_stage(s, alive, t)
        self._region_outputs(spec, alive)
        n_kept = sum(1 for r in regions if r.get("_final", r["status"]) == "kept")
        needs_rerun = any(r.get("_final_reason") == NEEDS_RERUN for r in judged)
        # A pair a pair filter stopped never had regions proposed: passing now, it needs a re-run.
        stopped_early = pair["drop_stage"] in {s.name for s in pair_stages} or pair["drop_reason"] == NEEDS_RERUN
        self._regions_stage(spec, pair, n_kept, needs_rerun or (not regions and stopped_early), has_samples)

    def _pair_stages(self, spec: StoredPipeline, stages: list[Stage], pair: dict, regions: list[dict], t) -> bool:
        """The pair filters in order; False if one drops the pair (its regions then drop with it)."""
        for s in stages:
            verdict = s.judge(pair, t)
            self.result.record(s.name, verdict)
            if not verdict.keep:
                self._finish_pair(pair, s.name, verdict.reason)
                for region in regions:  # a pair the filter drops has no regions in a flow run
                    if _threshold_decided_region(spec, region):
                        self._set_region(region, verdict)
                return False
        return True

    def _region_stage(self, stage: Stage, regions: list[dict], t) -> list[dict]:
        """One region filter over the regions still alive; those it drops get their final verdict."""
        judged = []
        for region in regions:
            if self._missing("regions", stage, region, t):
                region["_final"] = region["status"]
            else:
                judged.append(region)
        if stage.level == PAIR_REGIONS:
            verdicts = stage.judge_group(judged, t)
        else:
            verdicts = [stage.judge(region, t) for region in judged]
        alive = []
        for region, verdict in zip(judged, verdicts):
            self.result.record(stage.name, verdict)
            if verdict.keep:
                alive.append(region)
            else:
                self._set_region(region, verdict)
        return alive

    def _region_outputs(self, spec: StoredPipeline, regions: list[dict]) -> None:
        """A region passing every filter is kept only if it has what the later model steps make."""
        needs = spec.pipeline.outputs()
        for region in regions:
            verdict = KEEP
            if needs and any(region.get(c) is None for c in needs):
                verdict = Verdict.drop(NEEDS_RERUN)
                region["_final_reason"] = NEEDS_RERUN
            if needs and spec.region_outputs is not None:
                self.result.record(spec.region_outputs.name, verdict)
            self._set_region(region, verdict)

    def _pair_outputs(self, spec: StoredPipeline, pair: dict, has_samples: bool) -> None:
        """The closing verdict of a pipeline without region filters: a pair passing every filter is kept
        if the later model steps made its samples, else it needs a re-run (a filter had stopped it)."""
        verdict = KEEP if has_samples else Verdict.drop(NEEDS_RERUN)
        self.result.record(spec.final.name, verdict)
        self._finish_pair(pair, None if verdict.keep else spec.final.name, verdict.reason)

    def _regions_stage(self, spec: StoredPipeline, pair: dict, n_kept: int, needs_rerun: bool,
                       has_samples: bool) -> None:
        """The pair-level verdict: kept with a kept region and its samples; ``needs_rerun`` when a
        region (or, for a pair a pair filter stopped, the whole region part) was never made."""
        if n_kept and has_samples:
            verdict = KEEP
        elif n_kept or needs_rerun:
            verdict = Verdict.drop(NEEDS_RERUN)
        else:
            verdict = Verdict.drop(NO_REGION_KEPT)
        self.result.record(spec.final.name, verdict)
        self._finish_pair(pair, None if verdict.keep else spec.final.name, verdict.reason)

    def _finish_pair(self, pair: dict, stage: str | None, reason: str | None) -> None:
        new = {"status": "kept" if reason is None else "dropped", "drop_stage": stage, "drop_reason": reason}
        if (pair["status"], pair["drop_stage"], pair["drop_reason"]) != tuple(new.values()):
            self.result.pair_updates[pair["pair_id"]] = new


def rejudge_pairs(
    pairs: list[dict],
    regions: list[dict],
    pairs_with_samples: set[str],
    thresholds: RefilterThresholds,
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


def refilter_table() -> list[tuple[str, str, str, str]]:
    """What ``refilter`` re-judges, read from the pipeline declarations: one row per pipeline and
    stage, in order: (pipeline, stage, threshold fields it reads as ``section.field``, reasons it may
    give). A filter missing a score it reads counts the row as ``<stage>_not_rejudged``."""
    rows = []
    for spec in STORED.values():
        for s in spec.rejudged_stages():
            fields = ", ".join(f"{spec.section}.{f}" for f in s.thresholds)
            reasons = [*s.reasons, f"{s.name}_not_rejudged"] if s.is_filter else list(s.reasons)
            rows.append((spec.method, s.name, fields, ", ".join(reasons)))
    return rows
