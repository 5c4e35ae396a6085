"""Training and evaluation samples read from LanceDB at a pinned table version, with their pair images.

A fine-tuning run must be reproducible from its run card, but flows keep writing to ``samples``.
So a run pins the ``samples`` and ``pairs`` tables to one version each (the latest, a given
version, or a LanceDB tag), optionally tags that version so ``cleanup_old_versions`` keeps it, and
reads through a checked-out handle of its own: the shared handle other tasks write through is
never moved back in time.

Selection also checks each sample's pictures against the model's image processor
(``ProcessorCheck``): a size the processor refuses (Qwen2-VL: an aspect ratio over 200, e.g. a
7000x32 image) is a counted ``select_aspect_too_large`` / ``select_image_rejected`` reason, never an
error that aborts a whole training run halfway through its first epoch.

Only the sample text is held in memory. Images are fetched by key from the pinned ``pairs`` table
when a trainer asks for an item (``datasets`` calls the transform on access; ``PairStore.take`` reads
the row at its offset, no scan), with a small cache since a pair serves several samples. A kept
pair always has both images (every pipeline keeps only pairs it could show), so selection checks
the pair's status without reading image bytes.

A conversation's ``<image>`` placeholders become the chat template's image blocks in place: two
images (before, after) as the model's multi-image input, or with ``layout="side-by-side"`` one
picture of both with a 20 px bar, for single-image models (boxes stay valid: the before image is
the left one, at the origin).

A sample's *data source* (``training_mix.data_source``) is the public set it was imported from
(its ``dataset``: clevr-change, spot-the-diff, ...) or, for samples pairsmith made, the pipeline
that made it (its ``method``: dig-render, med-edit, ...). Selections (``datasets``), training mixes
and per-dataset evaluation results all name samples this way. Training never reads ``test`` or ``bench`` samples:
a training selection (``training=True``) leaves them out in the query itself.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pairsmith.models.runtime import ModelRuntime
from pairsmith.storage.box_format import BOX_TASKS, BoxFormat
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.storage.pair_images import IMAGE, open_image, side_by_side, side_by_side_text
from pairsmith.storage.store import PairStore, open_store, sql_in, sql_literal
from pairsmith.storage.versions import pinned_store

log = logging.getLogger("pairsmith.training")
from pairsmith.tasks.stage import stage
from pairsmith.tasks.training.training_mix import MixOutcome, TrainingMix

Layout = Literal["multi", "side-by-side"]
SAMPLE_COLUMNS = ["sample_id", "pair_id", "run_id", "method", "task", "subset", "conversation", "answer",
                  "boxes", "options", "category", "split", "dataset"]
STAGE = "select-samples"
HELD_OUT_SPLITS = ("test", "bench")  # never trained on (design.md §3)


class DataSelection(BaseModel):
    """Which samples a run reads, and at which version of the tables."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    tasks: list[str] = Field(default_factory=lambda: ["grounding", "diff-caption"],
                             description="sample tasks, e.g. grounding, diff-caption, med-mcq, med-diff-qa")
    methods: list[str] = Field(default_factory=list, description="pipelines (dig-render, med-edit, ...); empty = all")
    splits: list[str] = Field(default_factory=lambda: ["train"], description="train / val / test / bench")
    subsets: list[str] = Field(default_factory=list, description="single / double / mixed ...; empty = all")
    run_ids: list[str] = Field(default_factory=list, description="only samples of these runs; empty = all")
    datasets: list[str] = Field(
        default_factory=list, description="only these data sources: an imported set's name (clevr-change, "
        "spot-the-diff, ...) or, for samples pairsmith made, their pipeline (dig-render, ...); empty = all",
    )
    table_version: int | None = Field(None, ge=1, description="samples table version to read; default: latest")
    table_tag: str | None = Field(None, description="LanceDB tag of the samples table to read instead")
    limit: int | None = Field(None, ge=1, description="at most this many samples (in sample-id order)")
    layout: Layout = Field("multi", description="two images, or one side-by-side picture for single-image models")
    box_format: Literal["pixels", "norm1000", "resized-pixels"] = Field(
        "pixels", description="frame of grounding boxes in prompts, answers and rewards: pixels of the image, "
        "0-1000 (Qwen2-VL / Qwen3-VL), or pixels after the processor's resize (Qwen2.5-VL)")
    processor: str | None = Field(None, description="resized-pixels: image processor folder (default Qwen2.5-VL's)")

    @model_validator(mode="after")
    def _one_pin(self) -> "DataSelection":
        if self.table_version is not None and self.table_tag is not None:
            raise ValueError("give table_version or table_tag, not both")
        if not self.tasks:
            raise ValueError("tasks must name at least one sample task")
        if self.processor is not None and self.box_format != "resized-pixels":
            raise ValueError("processor only applies to box_format resized-pixels")
        return self

    def boxes(self) -> BoxFormat:
        return BoxFormat.named(self.box_format, self.processor)

    def where(self, subsets: list[str] | None = None, *, training: bool = False, has_dataset: bool = True) -> str:
        """The LanceDB filter; ``training`` leaves out held-out splits whatever ``splits`` says,
        ``has_dataset`` says whether the table version read has the ``dataset`` column."""
        clauses = [sql_in("task", self.tasks)]
        for column, values in (("method", self.methods), ("split", self.splits), ("run_id", self.run_ids),
                               ("subset", self.subsets if subsets is None else subsets)):
            if values:
                clauses.append(sql_in(column, values))
        if self.datasets:
            by_method = sql_in("method", self.datasets)
            clauses.append(f"({sql_in('dataset', self.datasets)} OR (dataset IS NULL AND {by_method}))"
                           if has_dataset else by_method)
        if training:
            clauses.append(f"split NOT IN ({', '.join(sql_literal(s) for s in HELD_OUT_SPLITS)})")
        return " AND ".join(clauses)


@dataclass
class PinnedTables:
    """The versions a run read; what its run card records."""

    db: str
    samples_version: int
    pairs_version: int
    tag: str | None = None
    created_tag: bool = False  # this run made ``tag``: a run that fails deletes it (``release_pinned``)

    def as_dict(self) -> dict[str, Any]:
        return {"db": self.db, "samples_version": self.samples_version, "pairs_version": self.pairs_version,
                "tag": self.tag}


def pin_tables(store: PairStore, selection: DataSelection, tag_as: str | None = None) -> PinnedTables:
    """Resolve the selection's version or tag; with ``tag_as``, tag the versions read (if not yet tagged).

    One tag, ``<tag_as>-v<samples version>``, names the samples version and the pairs version read
    (``-p<pairs version>`` is added when that name already holds another pairs version), so cleanup,
    ``maintain``'s and a writer's during a run alike (``storage/store.py``), keeps what the run
    reopens by version number later (data-loader workers reopen ``pairs`` at its version), and
    ``export --at`` reads that same pair of versions. With ``table_tag``, the pairs version is that
    tag's on ``pairs`` where it has one, else the latest. ``PinnedTables.tag`` is the selection's tag
    if it named one, else the new one."""
    names = store.table_names()
    for name in ("samples", "pairs"):
        if name not in names:
            raise ValueError(f"{store.uri!r} has no {name!r} table yet; run 'pairsmith render' first")
    samples, pairs = store.db.open_table("samples"), store.db.open_table("pairs")
    pairs_version = pairs.version
    if selection.table_tag is not None:
        tags = samples.tags.list()
        if selection.table_tag not in tags:
            raise ValueError(f"table_tag {selection.table_tag!r}: no such tag on 'samples' "
                             f"(tags: {', '.join(sorted(tags)) or 'none'})")
        version = samples.tags.get_version(selection.table_tag)
        if selection.table_tag in pairs.tags.list():
            pairs_version = pairs.tags.get_version(selection.table_tag)
    else:
        version = selection.table_version or samples.version
        if version > samples.version:
            raise ValueError(f"table_version {version}: 'samples' has only {samples.version} versions")
    tag, created = selection.table_tag, False
    if tag_as:
        own = f"{tag_as}-v{version}"
        held = pairs.tags.list().get(own)
        if held is not None and int(held["version"]) != pairs_version:
            own = f"{own}-p{pairs_version}"
        for table, table_version in ((samples, version), (pairs, pairs_version)):
            if own not in table.tags.list():
                table.tags.create(own, table_version)
                created = tag is None
        tag = tag or own
    return PinnedTables(store.uri, version, pairs_version, tag, created_tag=created)


def release_pinned(store: PairStore, pinned: PinnedTables | None) -> None:
    """A run that failed deletes the tag it made (a tag that was there before, or the selection's own
    ``table_tag``, stays): no ``finetune-*`` / ``evaluate-*`` tag pins versions for a run that left nothing."""
    if pinned is None or not pinned.created_tag or pinned.tag is None:
        return
    from pairsmith.storage.versions import delete_tag

    try:
        delete_tag(store, pinned.tag)
    except Exception as err:  # the failure being reported matters more; `versions --delete` remains
        log.warning("could not delete tag %s of the failed run: %s", pinned.tag, err)


def remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders a failed run created (innermost first) if they hold no file."""
    for folder in folders:
        try:
            if folder.is_dir() and not any(p.is_file() or p.is_symlink() for p in folder.rglob("*")):
                shutil.rmtree(folder)
        except OSError:
            pass


@dataclass
class SelectedSamples:
    rows: list[dict[str, Any]]
    stats: StageStats
    mix: MixOutcome | None = None  # what a training mix found and took


@dataclass(frozen=True)
class ProcessorCheck:
    """Whether the image processor of ``model_id`` (a hub id or folder, read with ``runtime``'s cache
    and offline settings) accepts pictures of a given size; pickles as its two fields."""

    model_id: str
    runtime: ModelRuntime = ModelRuntime()

    def problem(self, width: int, height: int) -> tuple[str, str] | None:
        """``(reason, processor's message)`` if a ``width`` x ``height`` picture is refused, else None.
        A processor that cannot be read here is not checked (loading the model reports it)."""
        processor = _image_processor(self.model_id, self.runtime)
        if processor is None:
            return None
        return _size_problem(processor, int(width), int(height))


@functools.lru_cache(maxsize=8)
def _image_processor(model_id: str, runtime: ModelRuntime):
    try:
        from transformers import AutoImageProcessor

        return AutoImageProcessor.from_pretrained(model_id, **runtime.hf_kwargs())
    except Exception as err:  # noqa: BLE001 - no processor to check against; the model load names the cause
        logging.getLogger(__name__).warning("not checking image sizes against %s's processor: %s", model_id, err)
        return None


@functools.lru_cache(maxsize=4096)
def _size_problem(processor, width: int, height: int) -> tuple[str, str] | None:
    """The processor's own verdict on a size: its ``smart_resize`` (Qwen2-VL family: arithmetic only),
    else the processor run on a blank picture of that size."""
    if min(width, height) < 1:
        return "select_image_rejected", f"{width}x{height}: an empty picture"
    resize = getattr(sys.modules.get(type(processor).__module__), "smart_resize", None)
    try:
        size = getattr(processor, "size", None)
        if resize is not None and getattr(processor, "patch_size", None) and getattr(processor, "merge_size", None):
            kwargs = {"factor": processor.patch_size * processor.merge_size}
            low = getattr(processor, "min_pixels", None) or getattr(size, "shortest_edge", None)
            high = getattr(processor, "max_pixels", None) or getattr(size, "longest_edge", None)
            kwargs.update({k: v for k, v in (("min_pixels", low), ("max_pixels", high)) if v})
            resize(height, width, **kwargs)
        else:
            from PIL import Image

            processor(images=[Image.new("RGB", (width, height))], return_tensors="pt")
    except (ValueError, TypeError, RuntimeError) as err:
        reason = "select_aspect_too_large" if "aspect ratio" in str(err) else "select_image_rejected"
        return reason, f"{width}x{height}: {type(processor).__name__}: {err}"
    return None


def shown_sizes(width: int, height: int, layout: Layout) -> list[tuple[int, int]]:
    """The pictures a sample over a ``width`` x ``height`` pair shows the model: the pair's two images,
    or one side-by-side picture of both (``pairsmith.storage.pair_images.side_by_side``)."""
    from pairsmith.storage.pair_images import BAR_PX

    return [(width, height)] if layout == "multi" else [(2 * width + BAR_PX, height)]


def _check_sample(row: dict[str, Any], has_images: bool) -> Verdict:
    if not has_images:
        return Verdict.drop("select_pair_missing")
    turns = row["conversation"] or []
    if len(turns) < 2 or turns[-1]["role"] != "assistant" or not turns[-1]["content"].strip():
        return Verdict.drop("select_no_answer")
    if sum(t["content"].count(IMAGE) for t in turns) != 2:
        return Verdict.drop("select_image_mismatch")
    return KEEP


def select_samples(
    store: PairStore, pinned: PinnedTables, selection: DataSelection, subsets: list[str] | None = None,
    stats: StageStats | None = None, *, training: bool = False, mix: TrainingMix | None = None,
    check: ProcessorCheck | None = None,
) -> SelectedSamples:
    """Samples matching the selection at the pinned version whose pair is kept (so has both images).

    ``training``: never a ``test`` or ``bench`` sample. ``mix``: of the samples that pass, those
    the mix takes (``pairsmith.tasks.training.training_mix``). ``check``: the model's image
    processor, asked about each pair's stored size as the layout shows it (a refused one is
    ``select_aspect_too_large`` or ``select_image_rejected``, logged with the processor's message).
    Samples that cannot be shown to a model, and samples a mix leaves out, become counted drop
    reasons (in ``stats``, a new ``select-samples`` StageStats if None), not errors.
    """
    view = pinned_store(store, {"samples": pinned.samples_version, "pairs": pinned.pairs_version})
    columns = [c for c in SAMPLE_COLUMNS if c in view.table("samples").schema.names]  # older tables lack newer columns
    where = selection.where(subsets, training=training, has_dataset="dataset" in columns)
    rows = view.read("samples", where=where, columns=columns).to_pylist()
    rows.sort(key=lambda r: r["sample_id"])
    if selection.limit:
        rows = rows[: selection.limit]
    kept_pairs = {r["pair_id"]: (r["width"], r["height"]) for r in view.read(
        "pairs", where="status = 'kept'", columns=["pair_id", "width", "height"]).to_pylist()}
    stats = stats if stats is not None else StageStats(STAGE)
    verdicts = {row["sample_id"]: _check_sample(row, row["pair_id"] in kept_pairs) for row in rows}
    if check is not None:
        logger = logging.getLogger(__name__)
        for row in rows:
            if not verdicts[row["sample_id"]].keep:
                continue
            for width, height in shown_sizes(*kept_pairs[row["pair_id"]], selection.layout):
                problem = check.problem(width, height)
                if problem is not None:
                    verdicts[row["sample_id"]] = Verdict.drop(problem[0])
                    logger.warning("sample %s (pair %s) left out: %s", row["sample_id"], row["pair_id"], problem[1])
                    break
    outcome = mix.take([r for r in rows if verdicts[r["sample_id"]].keep]) if mix is not None else None
    if outcome is not None:
        verdicts.update(outcome.left_out)
    kept = []
    for row in rows:
        stats.record(verdicts[row["sample_id"]])
        if verdicts[row["sample_id"]].keep:
            kept.append(row)
    return SelectedSamples(kept, stats, outcome)


class PairImages:
    """Before/after images of pairs from the pinned ``pairs`` table, a few hundred decoded at a time.

    Pickles as its database URI and version (no connection, no cache), so data-loader workers and
    ``datasets``' fingerprinting can copy it.
    """

    def __init__(self, db: str, pairs_version: int, cache_size: int = 256):
        self.db = db
        self.version = pairs_version
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple] = OrderedDict()
        self._view: PairStore | None = None

    def __getstate__(self) -> dict:
        return {"db": self.db, "version": self.version, "cache_size": self.cache_size}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["db"], state["version"], state["cache_size"])

    def get(self, pair_id: str) -> tuple:
        if pair_id in self._cache:
            self._cache.move_to_end(pair_id)
            return self._cache[pair_id]
        if self._view is None:
            self._view = pinned_store(open_store(self.db), {"pairs": self.version})
        found = [r for chunk in self._view.take("pairs", [pair_id], ["image_before", "image_after"]) for r in chunk]
        if not found or found[0]["image_before"] is None or found[0]["image_after"] is None:
            raise ValueError(f"pair {pair_id}: no images in 'pairs' at version {self.version}")
        images = (open_image(found[0]["image_before"]), open_image(found[0]["image_after"]))
        self._cache[pair_id] = images
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return images

    def for_layout(self, pair_id: str, layout: Layout) -> list:
        before, after = self.get(pair_id)
        return [side_by_side(before, after)] if layout == "side-by-side" else [before, after]


def layout_text(text: str, layout: Layout, boxes_asked: bool = False) -> str:
    """The prompt text for a layout: side-by-side folds the two placeholders into one and says how."""
    return text if layout == "multi" else side_by_side_text(text, boxes_asked)


def content_blocks(text: str) -> list[dict[str, str]]:
    """Chat-template content: an image block where each ``<image>`` stood, text blocks between."""
    blocks: list[dict[str, str]] = []
    for i, part in enumerate(text.split(IMAGE)):
        if i:
            blocks.append({"type": "image"})
        if part.strip():
            blocks.append({"type": "text", "text": part.strip()})
    return blocks


def prompt_and_completion(
    conversation: list[dict[str, str]], layout: Layout, boxes_asked: bool = False,
) -> tuple[list[dict], list[dict]]:
    """TRL's conversational prompt/completion: every turn but the last, and the last (the answer)."""
    prompt = [{"role": m["role"], "content": content_blocks(layout_text(m["content"], layout, boxes_asked))}
              for m in conversation[:-1]]
    answer = conversation[-1]
    return prompt, [{"role": answer["role"], "content": [{"type": "text", "text": answer["content"]}]}]


def prompt_text(conversation: list[dict[str, str]], layout: Layout, boxes_asked: bool = False) -> str:
    """The last user turn without placeholders: what ``VlmChat`` sends after the images."""
    user = [m for m in conversation[:-1] if m["role"] == "user"][-1]
    blocks = content_blocks(layout_text(user["content"], layout, boxes_asked))
    return "\n".join(b["text"] for b in blocks if b["type"] == "text")


def in_box_format(
    conversation: list[dict[str, str]], boxes: list[list[float]], box: BoxFormat, images: list, original: tuple[int, int],
) -> tuple[list[dict[str, str]], list[list[int]]]:
    """A grounding sample's turns and boxes in ``box``'s format, for the pictures ``images`` shown
    (one side-by-side picture or the pair); ``original`` is the before image's size."""
    turns, model = box.grounding([(m["role"], m["content"]) for m in conversation], boxes, original,
                                 images[0].size, side_by_side=len(images) == 1)
    return [{"role": role, "content": text} for role, text in turns], model


@dataclass
class ItemLoader:
    """The ``datasets`` transform that turns stored sample text into a trainer item with its images."""

    images: PairImages
    layout: Layout
    with_completion: bool
    with_boxes: bool
    box: BoxFormat = BoxFormat()

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"prompt": [], "images": []}
        if self.with_completion:
            out["completion"] = []
        if self.with_boxes:
            out["gt_boxes"] = []
        for pair_id, task, conversation, boxes in zip(batch["pair_id"], batch["task"], batch["conversation"],
                                                      batch["gt_boxes"]):
            conversation = json.loads(conversation)
            images = self.images.for_layout(pair_id, self.layout)
            boxes_asked = task in BOX_TASKS
            if boxes_asked:  # prompt, answer and true boxes in the frame the model answers in
                conversation, boxes = in_box_format(conversation, boxes, self.box, images,
                                                    self.images.get(pair_id)[0].size)
            prompt, completion = prompt_and_completion(conversation, self.layout, boxes_asked)
            out["prompt"].append(prompt)
            out["images"].append(images)
            if self.with_completion:
                out["completion"].append(completion)
            if self.with_boxes:
                out["gt_boxes"].append(boxes)
        return out


def training_dataset(
    rows: list[dict[str, Any]], images: PairImages, layout: Layout, *, with_completion: bool, with_boxes: bool,
    box: BoxFormat | None = None,
):
    """A ``datasets.Dataset`` of the sample text whose items carry their images, loaded on access.

    SFT items hold ``prompt``, ``completion`` and ``images`` (TRL masks the prompt out of the loss);
    GRPO items hold ``prompt``, ``images`` and ``gt_boxes``, which reaches the reward function.
    Grounding prompts, answers and ``gt_boxes`` are in ``box``'s format (default pixels), in the frame
    of the picture shown; the reward's IoU is the same in any frame, so it compares them as they are.
    """
    import datasets

    features = datasets.Features({
        "sample_id": datasets.Value("string"),
        "pair_id": datasets.Value("string"),
        "task": datasets.Value("string"),
        "conversation": datasets.Value("string"),
        "gt_boxes": datasets.List(datasets.List(datasets.Value("float64"))),
    })
    table = {
        "sample_id": [r["sample_id"] for r in rows],
        "pair_id": [r["pair_id"] for r in rows],
        "task": [r["task"] for r in rows],
        "conversation": [json.dumps([{"role": m["role"], "content": m["content"]} for m in r["conversation"]])
                         for r in rows],
        "gt_boxes": [[list(map(float, b)) for b in (r["boxes"] or [])] for r in rows],
    }
    dataset = datasets.Dataset.from_dict(table, features=features)
    return dataset.with_transform(ItemLoader(images, layout, with_completion, with_boxes, box or BoxFormat()))


@stage(STAGE)
def select_samples_task(
    stats: StageStats, db: str, pinned: PinnedTables, selection: DataSelection, subsets: list[str] | None = None,
    training: bool = False, mix: TrainingMix | None = None, check: ProcessorCheck | None = None,
) -> SelectedSamples:
    """``select_samples`` as the flows' ``select-samples`` stage: the kept rows, counted and timed."""
    return select_samples(open_store(db), pinned, selection, subsets, stats, training=training, mix=mix,
                          check=check)
