"""Where MED's source photos come from: a folder with a captions file, or pairs already stored.

A captions file is JSONL (``{"image": "x.jpg", "caption": "..."}`` per line) or COCO captions, read by
``pairsmith.storage.image_folder.load_captions``; a photo is edited once, from its first caption. Image paths
are relative to the images folder, and only files inside it are read: a name that leaves it
(``..``, an absolute path, a symlink pointing out) is a ``path_outside_root`` reason row, never
opened and never sent to the editor. Listing sources reads no pixels; each batch loads and checks
its own images, so a missing or broken file becomes a reason row for that item only.
``check_sources`` finds the input problems that concern the whole run (no images folder, a captions
file that is missing or malformed) before a flow starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pairsmith.storage.ids import NOT_CONTENT, stable_id
from pairsmith.storage.image_folder import load_captions
from pairsmith.storage.input_files import PATH_OUTSIDE_ROOT, PathOutsideRoot, inside_root
from pairsmith.storage.store import PairStore, sql_in, sql_literal


class FolderSource(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    images_dir: str = Field(description="folder the captions file's image paths are relative to")
    captions: str = Field(description="JSONL or COCO captions JSON")


class StoreSource(BaseModel):
    """Use the before images (and captions) of pairs already in the database as sources."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    methods: list[str] = Field(default_factory=lambda: ["dig-render"])
    run_id: str | None = None
    only_kept: bool = True


class MedSources(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    folder: FolderSource | None = None
    store: StoreSource | None = None
    limit: int | None = Field(None, ge=1, description="use at most this many sources (a larger limit extends the "
                              "same run)", json_schema_extra=NOT_CONTENT)

    @model_validator(mode="after")
    def _some(self) -> "MedSources":
        if self.folder is None and self.store is None:
            raise ValueError("give a folder source, a store source, or both")
        return self


@dataclass(frozen=True)
class SourceRef:
    """One source photo, not yet loaded: either a file or a stored pair's before image."""

    source_id: str
    caption: str
    path: str | None = None  # images folder / name as the captions file gives it
    pair_id: str | None = None
    problem: str | None = None  # set when the listing itself already shows the item is unusable
    root: str | None = None  # the images folder a file must lie in


def list_sources(config: MedSources, store: PairStore) -> list[SourceRef]:
    """Every source of the run in a stable order, each photo once; ids are stable across runs."""
    refs: list[SourceRef] = []
    if config.folder:
        root = Path(config.folder.images_dir)
        for name, captions in load_captions(config.folder.captions).items():
            caption = next((c for c in captions if c), "")  # MED edits a photo once, from its first caption
            problem = None if caption else "source_no_caption"
            try:
                inside_root(root, name)
            except PathOutsideRoot:
                problem = PATH_OUTSIDE_ROOT
            except OSError:
                pass  # the loader reports it for this item (source_unreadable)
            refs.append(SourceRef(stable_id("file", name), caption, path=str(root / name), problem=problem,
                                  root=str(root)))
    if config.store:
        clauses = [sql_in("method", config.store.methods)]
        if config.store.run_id:
            clauses.append(f"run_id = {sql_literal(config.store.run_id)}")
        if config.store.only_kept:
            clauses.append("status = 'kept'")
        rows = store.read("pairs", where=" AND ".join(clauses), columns=["pair_id", "caption_before"]).to_pylist()
        for row in sorted(rows, key=lambda r: r["pair_id"]):
            caption = row["caption_before"] or ""
            refs.append(SourceRef(stable_id("pair", row["pair_id"]), caption, pair_id=row["pair_id"],
                                  problem=None if caption else "source_no_caption"))
    return refs[: config.limit] if config.limit else refs


def check_sources(config: MedSources) -> None:
    """Raise a one-line ValueError for input that no item could survive: a folder source whose
    images folder is not a folder, or whose captions file is missing, not UTF-8, not JSON(L), has a
    line without a caption, or a COCO annotation naming an image it does not list (or an id listed
    for two photos). Reads the captions file, no image."""
    if config.folder:
        if not Path(config.folder.images_dir).is_dir():
            raise ValueError(f"sources.folder.images_dir {config.folder.images_dir!r}: not a folder")
        load_captions(config.folder.captions)
