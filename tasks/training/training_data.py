"""Training and evaluation samples read from LanceDB at a pinned table version, with their pair images.

A fine-tuning run must be reproducible from its run card, but flows keep writing to ``samples``.
So a run pins the ``samples`` and ``pairs`` tables to one version each (the latest, a given
version, or a LanceDB tag), optionally tags that version so ``cleanup_old_versions`` keeps it, and
reads through a checked-out handle of its own: the shared handle other tasks write through is
never moved back in time.

Only the sample text is held in memory. Images are fetched from the pinned ``pairs`` table when a
trainer asks for an item (``datasets`` calls the transform on access), with a small cache since a
pair serves several samples.

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

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.storage.export import IMAGE, SIDE_BY_SIDE_NOTE
from pairsmith.storage.pair_images import open_image, side_by_side
from pairsmith.storage.store import PairStore, open_store, sql_in, sql_literal
from pairsmith.tasks.stage import stage
from pairsmith.tasks.training.training_mix import MixOutcome, TrainingMix

Layout = Literal["multi", "side-by-side"]
SAMPLE_COLUMNS = ["sample_id", "pair_id", "run_id", "method", "task", "subset", "conversation", "answer",
                  "boxes", "options", "category", "split", "dataset"]
STAGE = "select-samples"
ID_CHUNK = 500
HELD_OUT_SPLITS = ("test", "bench")  # never trained on (design.md §3)


class DataSelection(BaseModel):
    """Which samples a run reads, and at which version of the tables."""

    model_config = ConfigDict(extra="forbid")

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

    @model_validator(mode="after")
    def _one_pin(self) -> "DataSelection":
        if self.table_version is not None and self.table_tag is not None:
            raise ValueError("give table_version or table_tag, not both")
        if not self.tasks:
            raise ValueError("tasks must name at least one sample task")
        return self

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

    def as_dict(self) -> dict[str, Any]:
        return {"db": self.db, "samples_version": self.samples_version, "pairs_version": self.pairs_version,
                "tag": self.tag}


def _open_at(store: PairStore, name: str, version: int):
    """A private handle of ``name`` checked out at ``version`` (shared handles stay at the latest)."""
    handle = store.db.open_table(name)
    handle.checkout(version)
    return handle


def pin_tables(store: PairStore, selection: DataSelection, tag_as: str | None = None) -> PinnedTables:
    """Resolve the selection's version or tag; with ``tag_as``, tag the version read (if not yet tagged)."""
    names = store.table_names()
    for name in ("samples", "pairs"):
        if name not in names:
            raise ValueError(f"{store.uri!r} has no {name!r} table yet; run 'pairsmith render' first")
    samples = store.db.open_table("samples")
    if selection.table_tag is not None:
        tags = samples.tags.list()
        if selection.table_tag not in tags:
            raise ValueError(f"table_tag {selection.table_tag!r}: no such tag on 'samples' "
                             f"(tags: {', '.join(sorted(tags)) or 'none'})")
        version = samples.tags.get_version(selection.table_tag)
    else:
        version = selection.table_version or samples.version
        if version > samples.version:
            raise ValueError(f"table_version {version}: 'samples' has only {samples.version} versions")
    tag = selection.table_tag
    if tag_as and tag is None:
        tag = f"{tag_as}-v{version}"
        if tag not in samples.tags.list():
            samples.tags.create(tag, version)
    return PinnedTables(store.uri, version, store.db.open_table("pairs").version, tag)


@dataclass
class SelectedSamples:
    rows: list[dict[str, Any]]
    stats: StageStats
    mix: MixOutcome | None = None  # what a training mix found and took


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
) -> SelectedSamples:
    """Samples matching the selection at the pinned version whose pair is kept and has both images.

    ``training``: never a ``test`` or ``bench`` sample. ``mix``: of the samples that pass, those
    the mix takes (``pairsmith.tasks.training.training_mix``). Samples that cannot be shown to a
    model, and samples a mix leaves out, become counted drop reasons (in ``stats``, a new
    ``select-samples`` StageStats if None), not errors.
    """
    table = _open_at(store, "samples", pinned.samples_version)
    columns = [c for c in SAMPLE_COLUMNS if c in table.schema.names]  # older tables lack newer columns
    where = selection.where(subsets, training=training, has_dataset="dataset" in columns)
    rows = table.search().where(where).select(columns).limit(None).to_arrow().to_pylist()
    rows.sort(key=lambda r: r["sample_id"])
    if selection.limit:
        rows = rows[: selection.limit]
    pairs = _open_at(store, "pairs", pinned.pairs_version)
    pair_ids = sorted({r["pair_id"] for r in rows})
    ok: set[str] = set()
    for i in range(0, len(pair_ids), ID_CHUNK):
        chunk = pair_ids[i:i + ID_CHUNK]
        found = pairs.search().where(
            f"{sql_in('pair_id', chunk)} AND status = 'kept' AND image_before IS NOT NULL AND image_after IS NOT NULL"
        ).select(["pair_id"]).limit(None).to_arrow()
        ok |= set(found.column("pair_id").to_pylist())
    stats = stats if stats is not None else StageStats(STAGE)
    verdicts = {row["sample_id"]: _check_sample(row, row["pair_id"] in ok) for row in rows}
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
        self._table = None

    def __getstate__(self) -> dict:
        return {"db": self.db, "version": self.version, "cache_size": self.cache_size}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["db"], state["version"], state["cache_size"])

    def get(self, pair_id: str) -> tuple:
        if pair_id in self._cache:
            self._cache.move_to_end(pair_id)
            return self._cache[pair_id]
        if self._table is None:
            self._table = _open_at(open_store(self.db), "pairs", self.version)
        found = self._table.search().where(f"pair_id = {sql_literal(pair_id)}").select(
            ["image_before", "image_after"]).limit(1).to_arrow().to_pylist()
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


def layout_text(text: str, layout: Layout) -> str:
    """The prompt text for a layout: side-by-side folds the two placeholders into one and says how."""
    if layout == "multi" or text.count(IMAGE) != 2:
        return text
    return IMAGE + "\n" + SIDE_BY_SIDE_NOTE + text.replace(IMAGE + "\n", "").replace(IMAGE, "")


def content_blocks(text: str) -> list[dict[str, str]]:
    """Chat-template content: an image block where each ``<image>`` stood, text blocks between."""
    blocks: list[dict[str, str]] = []
    for i, part in enumerate(text.split(IMAGE)):
        if i:
            blocks.append({"type": "image"})
        if part.strip():
            blocks.append({"type": "text", "text": part.strip()})
    return blocks


def prompt_and_completion(conversation: list[dict[str, str]], layout: Layout) -> tuple[list[dict], list[dict]]:
    """TRL's conversational prompt/completion: every turn but the last, and the last (the answer)."""
    prompt = [{"role": m["role"], "content": content_blocks(layout_text(m["content"], layout))}
              for m in conversation[:-1]]
    answer = conversation[-1]
    return prompt, [{"role": answer["role"], "content": [{"type": "text", "text": answer["content"]}]}]


def prompt_text(conversation: list[dict[str, str]], layout: Layout) -> str:
    """The last user turn without placeholders: what ``VlmChat`` sends after the images."""
    user = [m for m in conversation[:-1] if m["role"] == "user"][-1]
    return "\n".join(b["text"] for b in content_blocks(layout_text(user["content"], layout)) if b["type"] == "text")


@dataclass
class ItemLoader:
    """The ``datasets`` transform that turns stored sample text into a trainer item with its images."""

    images: PairImages
    layout: Layout
    with_completion: bool
    with_boxes: bool

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"prompt": [], "images": []}
        if self.with_completion:
            out["completion"] = []
        for pair_id, conversation in zip(batch["pair_id"], batch["conversation"]):
            prompt, completion = prompt_and_completion(json.loads(conversation), self.layout)
            out["prompt"].append(prompt)
            out["images"].append(self.images.for_layout(pair_id, self.layout))
            if self.with_completion:
                out["completion"].append(completion)
        if self.with_boxes:
            out["gt_boxes"] = batch["gt_boxes"]
        return out


def training_dataset(
    rows: list[dict[str, Any]], images: PairImages, layout: Layout, *, with_completion: bool, with_boxes: bool,
):
    """A ``datasets.Dataset`` of the sample text whose items carry their images, loaded on access.

    SFT items hold ``prompt``, ``completion`` and ``images`` (TRL masks the prompt out of the loss);
    GRPO items hold ``prompt``, ``images`` and ``gt_boxes``, which reaches the reward function.
    """
    import datasets

    features = datasets.Features({
        "sample_id": datasets.Value("string"),
        "pair_id": datasets.Value("string"),
        "conversation": datasets.Value("string"),
        "gt_boxes": datasets.List(datasets.List(datasets.Value("float64"))),
    })
    table = {
        "sample_id": [r["sample_id"] for r in rows],
        "pair_id": [r["pair_id"] for r in rows],
        "conversation": [json.dumps([{"role": m["role"], "content": m["content"]} for m in r["conversation"]])
                         for r in rows],
        "gt_boxes": [[list(map(float, b)) for b in (r["boxes"] or [])] for r in rows],
    }
    dataset = datasets.Dataset.from_dict(table, features=features)
    return dataset.with_transform(ItemLoader(images, layout, with_completion, with_boxes))


@stage(STAGE)
def select_samples_task(
    stats: StageStats, db: str, pinned: PinnedTables, selection: DataSelection, subsets: list[str] | None = None,
    training: bool = False, mix: TrainingMix | None = None,
) -> SelectedSamples:
    """``select_samples`` as the flows' ``select-samples`` stage: the kept rows, counted and timed."""
    return select_samples(open_store(db), pinned, selection, subsets, stats, training=training, mix=mix)
