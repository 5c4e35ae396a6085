"""Render a batch of planned scene pairs and keep only changes the camera can see.

Per pair, up to ``max_attempts`` tries, cheapest checks first:

1. id map of the before scene (milliseconds): every object must be visible, else a new layout;
2. draw the K modifications, id map of the after scene: each change must show enough pixels,
   else new modifications;
3. the two color renders (the expensive part), then each change's region must really differ in
   pixels, else new modifications.

A pair that fails every attempt is returned as dropped with the last reason, and its renders are
kept so a person can see why. Blender errors drop that pair only; the batch goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from pairsmith.filters.change_visibility import VisibilityThresholds, keep_change, keep_scene_objects
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.scenes.blender_render import CameraJitter, RenderSettings, get_renderer
from pairsmith.scenes.ground_truth import ChangeMeasure, decode_png, measure_regions, pixel_change
from pairsmith.scenes.pair_plan import PairPlan, PairSampling
from pairsmith.tasks.stage import stage
from pairsmith.scenes.scene_sampler import (
    Change,
    ObjectMap,
    PlacementError,
    as_object_map,
    jitter_camera,
    sample_changes,
    sample_scene,
)


@dataclass
class RenderedPair:
    plan: PairPlan
    verdict: Verdict = KEEP
    drop_stage: str | None = None
    drop_detail: str | None = None
    before: ObjectMap = field(default_factory=dict)
    after: ObjectMap = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    measures: list[list[ChangeMeasure]] = field(default_factory=list)  # per change: its regions
    camera: CameraJitter | None = None
    png_before: bytes | None = None
    png_after: bytes | None = None
    index_before: np.ndarray | None = None
    index_after: np.ndarray | None = None
    attempts: int = 0


def _logger() -> logging.Logger:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("pairsmith.render")


class _PairRenderer:
    """The attempt loop for one pair; holds the before renders so a retry reuses them."""

    def __init__(self, plan: PairPlan, render: RenderSettings, sampling: PairSampling, vis: VisibilityThresholds):
        self.plan, self.sampling, self.vis = plan, sampling, vis
        self.renderer = get_renderer(render)
        self.min_px = vis.min_pixels(render.width, render.height)
        self.rng = np.random.default_rng([plan.seed, 1])

    def run(self) -> RenderedPair:
        out = RenderedPair(plan=self.plan)
        scene = self.plan.scene
        index_before: np.ndarray | None = None
        png_before: bytes | None = None
        for attempt in range(1, self.sampling.max_attempts + 1):
            out.attempts = attempt
            before = as_object_map(scene)
            if index_before is None:
                index_before = self.renderer.render_index(before)
                visible = {i: int((index_before == i + 1).sum()) for i in before}
                verdict = keep_scene_objects(visible, self.min_px)
                if not verdict.keep:
                    out.verdict, out.before, out.index_before = verdict, before, index_before
                    if self.plan.user_scene:
                        break  # a user's layout is not ours to move
                    scene, index_before = self._new_scene(scene), None
                    continue
            try:
                after, changes, camera = self._draw_after(scene)
            except PlacementError as err:
                out.verdict, out.drop_detail = Verdict.drop("render_no_free_spot"), str(err)
                continue
            index_after = self.renderer.render_index(after, camera)
            measures = [measure_regions(c, index_before, index_after, None, self.sampling.boxes) for c in changes]
            verdict = self._judge(changes, measures, with_pixels=False)
            out.before, out.after, out.changes, out.measures, out.camera = before, after, changes, measures, camera
            out.index_before, out.index_after = index_before, index_after
            if not verdict.keep:
                out.verdict = verdict
                continue
            if png_before is None:
                png_before = self.renderer.render_color(before, self.plan.seed)
            png_after = self.renderer.render_color(after, self.plan.seed, camera)
            changed = pixel_change(decode_png(png_before), decode_png(png_after), self.vis.pixel_delta)
            out.measures = [measure_regions(c, index_before, index_after, changed, self.sampling.boxes) for c in changes]
            out.png_before, out.png_after = png_before, png_after
            out.verdict = self._judge(changes, out.measures, with_pixels=True)
            if out.verdict.keep:
                break
        if not out.verdict.keep:
            out.drop_stage = "visibility" if out.verdict.reason.startswith("visibility_") else "render"
        return out

    def _new_scene(self, scene):
        try:
            return sample_scene(self.rng, self.sampling.min_objects, self.sampling.max_objects)
        except PlacementError:
            return scene

    def _draw_after(self, scene) -> tuple[ObjectMap, list[Change], CameraJitter | None]:
        if self.plan.distractor:
            camera = jitter_camera(self.rng, self.sampling.camera_shift, self.sampling.camera_degrees)
            return as_object_map(scene), [], camera
        after, changes = sample_changes(scene, self.plan.n_changes, self.rng, self.sampling.change_kinds)
        return after, changes, None

    def _judge(self, changes: list[Change], measures: list[list[ChangeMeasure]], with_pixels: bool) -> Verdict:
        """Every region of every change must pass (a move's old place and new place alike)."""
        for change, regions in zip(changes, measures):
            for m in regions:
                fraction = m.changed_fraction if with_pixels else None
                verdict = keep_change(
                    change.kind, m.visible_px_before, m.visible_px_after, fraction,
                    self.min_px, self.vis.min_changed_fraction,
                )
                if not verdict.keep:
                    return verdict
        return KEEP


@stage("render", "visibility")
def render_scene_pairs(
    render_stats: StageStats,
    vis_stats: StageStats,
    plans: list[PairPlan],
    render: RenderSettings,
    sampling: PairSampling,
    visibility: VisibilityThresholds,
    on_pair_done: Callable[[int], None] | None = None,
) -> tuple[list[RenderedPair], float]:
    """The rendered pairs and the seconds spent inside Blender; counts the ``render`` and
    ``visibility`` stages (a pair dropped at planning is in neither)."""
    logger = _logger()
    renderer = get_renderer(render)
    renderer.prepare()  # a device error stops the run here instead of dropping every pair
    blender_before = renderer.timer.seconds
    results: list[RenderedPair] = []
    for plan in plans:
        if plan.drop_reason:  # dropped at planning: not counted here
            continue
        start = time.perf_counter()
        try:
            pair = _PairRenderer(plan, render, sampling, visibility).run()
        except Exception as err:  # one broken pair must not lose the batch
            logger.warning("pair %s (index %d): render failed: %s", plan.pair_id, plan.index, err)
            pair = RenderedPair(plan=plan, verdict=Verdict.drop("render_error"), drop_stage="render",
                                drop_detail=f"{type(err).__name__}: {err}")
        elapsed = time.perf_counter() - start
        render_stats.record(pair.verdict if pair.drop_stage == "render" else KEEP)
        render_stats.seconds += elapsed
        if pair.drop_stage != "render":
            vis_stats.record(pair.verdict)
        results.append(pair)
        if on_pair_done:
            on_pair_done(1)
    return results, renderer.timer.seconds - blender_before
