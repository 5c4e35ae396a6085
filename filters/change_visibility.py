"""Is a rendered change visible enough to be labelled?

A modification that the camera cannot see (occluded, off-screen, a few pixels) or that does not
change the pixels (a dark object turning metal in a dim corner) would teach a model to box
nothing. These filters judge the numbers ``pairsmith.scenes.ground_truth.measure_change`` stores, so the
thresholds can be re-applied to stored regions without rendering again.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pairsmith.storage.verdict import KEEP, Verdict


class VisibilityThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    min_visible_fraction: float = Field(
        0.0015, ge=0.0, le=1.0,
        description="least share of the image an object must cover where it exists (115 px at 320x240)",
    )
    pixel_delta: int = Field(12, ge=0, le=255, description="a pixel changed if a channel moved more than this")
    min_changed_fraction: float = Field(
        0.25, ge=0.0, le=1.0, description="least share of a change's region whose pixels changed"
    )

    def min_pixels(self, width: int, height: int) -> int:
        return max(1, round(self.min_visible_fraction * width * height))


def keep_scene_objects(visible_px: dict[int, int], min_pixels: int) -> Verdict:
    """Every object of a before-scene must be seen, or its later changes could not be labelled."""
    hidden = [object_id for object_id, px in visible_px.items() if px < min_pixels]
    if hidden:
        return Verdict.drop("visibility_object_hidden")
    return KEEP


def keep_change(
    kind: str,
    visible_px_before: int,
    visible_px_after: int,
    changed_fraction: float | None,
    min_pixels: int,
    min_changed_fraction: float,
) -> Verdict:
    """Keep a change whose object is seen where it exists and whose pixels really changed.

    ``changed_fraction`` is None while only the id maps exist (the cheap check before the color
    render); then only the pixel counts are judged.
    """
    if kind != "add" and visible_px_before < min_pixels:
        return Verdict.drop("visibility_hidden_before")
    if kind != "remove" and visible_px_after < min_pixels:
        return Verdict.drop("visibility_hidden_after")
    if changed_fraction is not None and changed_fraction < min_changed_fraction:
        return Verdict.drop("visibility_no_pixel_change")
    return KEEP
