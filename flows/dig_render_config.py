"""Parameters of the dig-render flow, validated before Prefect, Blender or LanceDB start."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pairsmith.scenes.change_text import CaptionStyle

from pairsmith.flows.engine.batching import batch_ranges
from pairsmith.flows.engine.run import declare
from pairsmith.filters.change_visibility import VisibilityThresholds
from pairsmith.flows.engine.task_runners import RunnerSettings
from pairsmith.scenes.blender_render import RenderSettings
from pairsmith.scenes.pair_plan import PairSampling
from pairsmith.scenes.scene_config import Scene, load_scenes
from pairsmith.storage.db_uri import DEFAULT_DB, check_db_uri
from pairsmith.storage.ids import NOT_CONTENT, content_key, stable_hash
from pairsmith.tasks.dig.prompts import GroundingPromptName
from pairsmith.tasks.sample_builders import SplitFractions

FLOW_NAME = "dig-render"

# The flow's stages in the order they run and are stored (tasks/dig/): the one place it is written.
PIPELINE = declare(
    FLOW_NAME,
    ("scene_plan", "sample a scene and its change per pair (scenes/pair_plan.py)"),
    ("render", "render the before and after images in Blender"),
    ("visibility", "drop changes too small or hidden to see (filters/change_visibility.py)"),
    ("dig_samples", "build the pair's records and DiG samples"),
)


class DigRenderConfig(BaseModel):
    """One dig-render run. Fields that shape pixels or labels go into the pair and run ids."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    db: str = Field(DEFAULT_DB, description="LanceDB URI: a folder, or s3:// gs:// az:// as LanceDB allows", json_schema_extra=NOT_CONTENT)
    pairs: int = Field(20, ge=1, le=10_000_000, description="pairs to render (kept + dropped)", json_schema_extra=NOT_CONTENT)
    seed: int = Field(0, ge=0, description="run seed; pair i draws from (seed, i)")
    batch_size: int = Field(10, ge=1, le=10_000, description="pairs per task run and per LanceDB commit", json_schema_extra=NOT_CONTENT)
    scenes_path: str | None = Field(None, description="scene JSON/JSONL file or folder instead of random scenes; pair i "
                                    "starts from scene i modulo their number", json_schema_extra={**NOT_CONTENT, "option": "scenes"})
    # The nested settings that are command-line options too (pairsmith render / run dig-render): sub-field -> option
    sampling: PairSampling = Field(default_factory=PairSampling, json_schema_extra={"options": {
        "min_objects": "min-objects", "max_objects": "max-objects", "min_changes": "min-changes",
        "max_changes": "max-changes", "change_kinds": "kind", "distractor_fraction": "distractors"}})
    render: RenderSettings = Field(default_factory=RenderSettings, json_schema_extra={"options": {
        "samples": "samples", "width": "width", "height": "height", "denoise": "denoise", "device": "device",
        "gpu_backend": "gpu-backend"}})
    visibility: VisibilityThresholds = Field(default_factory=VisibilityThresholds)
    splits: SplitFractions = Field(default_factory=SplitFractions)
    caption_style: CaptionStyle = Field(
        "referring", description="difference captions: 'referring' (OmniDiff-style: the object located by a "
        "neighbour or an image region, several phrasings) or 'plain' (pairsmith 0.1's sentences)",
        json_schema_extra={"option": "captions"},
    )
    grounding_prompt: GroundingPromptName = Field(
        "pairsmith", description="grounding samples' prompt: 'dig' (DiG's, verbatim) or 'pairsmith' (names the image "
        "size, asks for [] when nothing changed); pairsmith.tasks.dig.prompts",
    )
    show_progress: bool = Field(False, description="draw a progress bar on stderr (CLI runs)", json_schema_extra=NOT_CONTENT)
    runner: RunnerSettings = Field(default_factory=RunnerSettings, description="inline or Ray; not part of the run id",
                                   json_schema_extra={**NOT_CONTENT, "options": {
                                       "kind": "runner", "ray_address": "ray-address", "ray_num_cpus": "ray-cpus"}})
    seed_from_schedule: bool = Field(
        False, description="deployments: use the scheduled run's date (YYYYMMDD) as the seed, so each night "
        "renders new pairs and a retried night resumes its own run",
        json_schema_extra=NOT_CONTENT,
    )

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        return check_db_uri(value)

    @field_validator("scenes_path")
    @classmethod
    def _scenes(cls, value: str | None) -> str | None:
        if value is not None:
            load_scenes(value)  # raises one line naming the file and the bad field
        return value

    @classmethod
    def check_data(cls, data: dict) -> None:
        """Before validation (``pairsmith render`` / ``run``): the scenes file's own one-line error,
        naming the file and the bad field."""
        if data.get("scenes_path"):
            load_scenes(str(data["scenes_path"]))

    def user_scenes(self) -> list[Scene] | None:
        return load_scenes(self.scenes_path) if self.scenes_path else None

    def content_key(self) -> str:
        """What determines pair i's pixels and labels; the same key gives the same pair ids.

        ``pairsmith.storage.ids.content_key``: fields at their defaults and fields marked
        NOT_CONTENT (database, sizes of the run, device, runner, progress bar) count for nothing;
        a scenes file counts by its scenes, not its path."""
        scenes = stable_hash([s.model_dump(mode="json") for s in self.user_scenes()]) if self.scenes_path else None
        return content_key(self, scenes=scenes)

    def run_id(self) -> str:
        """Same content, same run, whatever ``pairs`` and ``batch_size`` are: re-running resumes it, a
        larger ``pairs`` extends it (``pairsmith.flows.engine.resume``)."""
        return f"{FLOW_NAME}-{self.content_key()[:12]}"

    def legacy_run_id(self, pairs: int, batch_size: int) -> str:
        """The id pairsmith before per-item resume gave this content's run of ``pairs`` pairs cut into ``batch_size``
        batches (it hashed both); ``resume.find_legacy_run`` finds such a run to continue it."""
        return f"{FLOW_NAME}-{stable_hash([self.content_key(), pairs, batch_size], 12)}"

    def with_schedule_seed(self, scheduled: date) -> "DigRenderConfig":
        """The config a scheduled run renders: same settings, the night's own seed."""
        if not self.seed_from_schedule:
            return self
        return self.model_copy(update={"seed": int(scheduled.strftime("%Y%m%d"))})

    def batches(self) -> list[range]:
        return batch_ranges(self.pairs, self.batch_size)
