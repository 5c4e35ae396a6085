"""What every importer shares: the config base, entries, reason rows, ids, images and samples.

An importer (``tasks/imports/<name>.py``) says only what is particular to its dataset: its config
(``pairsmith import <name>``'s options are generated from it), the published files it reads
(``input_files``), the folders its images lie in (``image_roots``), how those files become
``Entry`` objects (``read``: names and text, no pixels) and, if a pair's samples are not one
``diff-caption`` per reference sentence, which samples an entry gives (``samples``). Everything else
is here or in the ``import`` flow, the same for every importer:

* an entry that does not fit the format is a ``BadEntry``: a dropped pair row at stage ``read``;
* an entry listed twice collapses into one (same key, same content), or, if the key repeats with
  other content, the later one is a dropped row ``import_duplicate_entry`` naming the first;
* an image is looked up inside the entry's folders only: a name that leaves them (``..``, an
  absolute path, a symlink pointing out) is a dropped row ``path_outside_root`` and is never opened;
  a missing, unreadable (any ``OSError``) or broken image is a ``load_*`` row;
* images are decoded as a viewer shows them (``pairsmith.storage.image_decode``: upright, 8-bit,
  alpha over white); an animated or multi-page file is a ``source_multiframe`` row unless
  ``--frame N`` picks a frame, and a pair whose two images then show the same picture is a
  ``load_no_visible_change`` row;
* a pair's images are stored as PNG, or JPEG when both are JPEG (``image_format``), whatever format
  the files had (``source_format``);
* ids come from the entry's content (``Entry.key``), so importing a file twice, or from another
  folder, adds nothing; every pair and sample row carries the dataset's name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pairsmith.storage.db_uri import DEFAULT_DB, check_db_uri
from pairsmith.storage.ids import NOT_CONTENT, content_key, stable_hash, stable_id
from pairsmith.storage.image_decode import MULTIFRAME, NO_SUCH_FRAME
from pairsmith.storage.image_folder import ImageLimits
from pairsmith.storage.input_files import PATH_OUTSIDE_ROOT, read_json_file
from pairsmith.storage.schemas import PairRow, SampleRow, utc_now
from pairsmith.tasks.sample_builders import diff_caption_sample

SPLITS = ("train", "val", "test", "bench")
DUPLICATE = "import_duplicate_entry"
BAD_ENTRY = "import_bad_entry"


class ImportConfig(BaseModel):
    """Settings every importer has; a subclass adds its files and folders.

    A field's CLI option is ``--<field-name>`` with dashes, or ``json_schema_extra={"option": NAME}``.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    importer: ClassVar[str]  # the IMPORTERS name of the importer this config belongs to

    db: str = Field(DEFAULT_DB, description="LanceDB URI", json_schema_extra=NOT_CONTENT)
    # Never in the run id: a run is its entries; another size cuts only what is still to do
    # (flows/engine/resume.py). pairsmith before per-item resume counted it (see Importer.legacy_run_id).
    batch_size: int = Field(32, ge=1, le=10_000, description="entries per batch: one task run and one LanceDB "
                            "commit, so memory holds at most this many pairs' images", json_schema_extra=NOT_CONTENT)
    retry_failed: bool = Field(False, description="retry every entry dropped because an image could not be loaded, "
                               "not only those whose image file changed since", json_schema_extra=NOT_CONTENT)
    image_limits: ImageLimits = Field(default_factory=ImageLimits, description="images outside these are dropped",
                                      json_schema_extra={"options": {"frame": "frame"}})

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        return check_db_uri(value)

    def check_inputs(self) -> None:
        """Problems no entry could survive, as one ValueError before the flow starts (``pairsmith import``
        calls this): the importer's own ``check`` of its folders and files."""
        from pairsmith.tasks.imports import load_importer

        load_importer(self.importer).check(self)


def is_text(value: object) -> bool:
    """A string with something in it (not blank): what a caption, question or file name must be."""
    return isinstance(value, str) and bool(value.strip())


def sentences(value: object) -> tuple[str, ...]:
    """The reference captions of a list of strings: its non-blank ones, as written; () if ``value``
    is not a list of strings or holds only blank ones. A blank caption would become a training
    answer of nothing, so it is never a sample, and an entry without any caption is a bad entry
    (Spot-the-Diff's test split has 7 pairs whose only sentence is "")."""
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return ()
    return tuple(v for v in value if v.strip())


def option_name(config_class: type[BaseModel], field_name: str) -> str:
    """The CLI option of a config field, e.g. ``--json`` for MED's ``json_path``."""
    extra = config_class.model_fields[field_name].json_schema_extra
    name = extra.get("option") if isinstance(extra, dict) else None
    return "--" + (name or field_name.replace("_", "-"))


@dataclass(frozen=True)
class Entry:
    """One pair as the published files describe it: image paths (relative to the importer's image
    folders, as written in the files), reference captions, split and change type."""

    index: int  # position in the listing, for messages
    key: tuple  # what identifies the pair within its dataset: pair_id = stable_id(dataset, *key)
    before: str
    after: str
    origin: str  # where in the published files, e.g. "spot-the-diff:test.json#12"
    captions: tuple[str, ...] = ()
    split: str = "train"
    category: str | None = None  # the set's change type, if it has one: pair edit_category, sample category
    subset: str | None = None  # e.g. "distractor" for a pair with no semantic change
    extra: dict[str, Any] = field(default_factory=dict)  # importer-specific (MED: question, options, answer)

    def same_content(self, other: "Entry") -> bool:
        """Equal apart from where it was listed."""
        return replace(self, index=0, origin="") == replace(other, index=0, origin="")


@dataclass(frozen=True)
class BadEntry:
    """An entry that does not fit the published format: stored as a dropped pair row at ``read``."""

    index: int
    source: str  # the file it was read from (name only): with ``index``, the row's id
    reason: str
    detail: str
    origin: str


@dataclass
class Listing:
    """A dataset's entries in file order, each pair once."""

    entries: list[Entry | BadEntry]
    duplicates: int  # entries that repeated an earlier one exactly and were collapsed into it


C = TypeVar("C", bound=ImportConfig)


class Importer(Generic[C]):
    """Base of every importer; see the module docstring for what a subclass provides."""

    name: ClassVar[str]  # IMPORTERS key: the CLI sub-command, the dataset column, flow "import-<name>"
    method: ClassVar[str]  # pairs.method of the pairs it stores
    config_class: ClassVar[type[ImportConfig]]
    sample_task: ClassVar[str] = "diff-caption"  # the task of the samples it stores (for messages)
    folder_options: ClassVar[tuple[str, ...]] = ()  # config fields naming folders that must exist

    # --- what a subclass provides -----------------------------------------------------------------
    def input_files(self, config: C) -> list[Path]:
        """The published annotation files read; their bytes count in the run id."""
        raise NotImplementedError

    def image_roots(self, config: C) -> list[Path]:
        """Folders an entry's image paths are relative to, tried in order; nothing outside is read."""
        raise NotImplementedError

    def read(self, config: C) -> Iterable[Entry | BadEntry]:
        """Every entry of the files, in order, without reading any image. A file that cannot be
        read as the format at all raises a one-line ValueError naming it (and the line)."""
        raise NotImplementedError

    def check(self, config: C) -> None:
        """Input checks before anything runs (one-line ValueError): the folders named in
        ``folder_options`` exist, and the files can be read and list at least one entry."""
        for name in self.folder_options:
            value = getattr(config, name)
            if value is not None and not Path(value).is_dir():
                raise ValueError(f"{option_name(type(config), name)} {value!r}: not a folder")
        if not self.listing(config).entries:
            files = ", ".join(repr(str(f)) for f in self.input_files(config))
            raise ValueError(f"{files}: no entries to import")

    def dataset(self, config: C) -> str:
        """The ``dataset`` of every row; a generic importer may take it from its config."""
        return self.name

    def pair_fields(self, config: C, entry: Entry) -> dict[str, Any]:
        """Further pairs columns of a kept pair (e.g. ``model_ids``)."""
        return {}

    def samples(self, config: C, entry: Entry, pair_id: str, run_id: str) -> list[SampleRow]:
        """One ``diff-caption`` sample per reference caption, all kept, in the entry's split."""
        return [
            diff_caption_sample(pair_id=pair_id, run_id=run_id, method=self.method, sentences=[caption], boxes=[],
                                subset=entry.subset, split=entry.split, category=entry.category, reference=k,
                                dataset=self.dataset(config))
            for k, caption in enumerate(entry.captions)
        ]

    # --- the same for every importer ------------------------------------------------------------------
    @property
    def flow_name(self) -> str:
        return f"import-{self.name}"

    def run_id(self, config: C) -> str:
        """From the config's content and the bytes of the files read: the same files and settings
        resume the same run, whatever the batch size; an edited file is a new run (its unchanged
        pairs keep their ids)."""
        return f"{self.flow_name}-{content_key(config, inputs=self._inputs_hash(config))[:12]}"

    def legacy_run_id(self, config: C, n_entries: int, batch_size: int) -> str:
        """The id pairsmith before per-item resume gave the run: a batch size other than 32 counted in it."""
        size = batch_size if batch_size != type(config).model_fields["batch_size"].default else None
        return f"{self.flow_name}-{content_key(config, inputs=self._inputs_hash(config), batch_size=size)[:12]}"

    def _inputs_hash(self, config: C) -> str:
        return stable_hash([hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in self.input_files(config)])

    def item_ids(self, config: C, listing: "Listing") -> list[str]:
        """The pair id of every listed entry, in listing order (a bad entry's own id)."""
        return [self.pair_id(config, e) if isinstance(e, Entry) else
                stable_id(f"{self.dataset(config)}-entry", e.source, e.index) for e in listing.entries]

    def image_paths(self, config: C, entry: "Entry | BadEntry") -> list[Path]:
        """Where an entry's images are (or would be: the first root) for a re-run's change check."""
        if not isinstance(entry, Entry):
            return []
        roots = self.image_roots(config)
        out = []
        for name in (entry.before, entry.after):
            found = next((Path(r) / name for r in roots if (Path(r) / name).exists()), None)
            out.append(found if found is not None else Path(roots[0] if roots else ".") / name)
        return out

    def pair_id(self, config: C, entry: Entry) -> str:
        return stable_id(self.dataset(config), *entry.key)

    def listing(self, config: C) -> Listing:
        """``read``'s entries with repeats resolved: an exact repeat collapses into the first; a
        repeated key with other content becomes a ``BadEntry`` (``import_duplicate_entry``)."""
        first: dict[str, Entry] = {}
        out: list[Entry | BadEntry] = []
        duplicates = 0
        for entry in self.read(config):
            if isinstance(entry, Entry):
                pair_id = self.pair_id(config, entry)
                earlier = first.setdefault(pair_id, entry)
                if earlier is not entry:
                    if earlier.same_content(entry):
                        duplicates += 1
                        continue
                    entry = BadEntry(entry.index, _source(entry.origin), DUPLICATE,
                                     f"{entry.origin}: the same pair as {earlier.origin} with other content; "
                                     f"{earlier.origin} is kept", entry.origin)
            out.append(entry)
        return Listing(out, duplicates)

    def dropped_row(self, config: C, run_id: str, pair_id: str, origin: str, stage: str, reason: str,
                    detail: str, category: str | None = None) -> PairRow:
        return PairRow(pair_id=pair_id, run_id=run_id, method=self.method, dataset=self.dataset(config),
                       width=0, height=0, origin=origin, edit_category=category, status="dropped",
                       drop_stage=stage, drop_reason=reason, drop_detail=detail, created_at=utc_now())

    def bad_entry_row(self, config: C, run_id: str, bad: BadEntry) -> PairRow:
        pair_id = stable_id(f"{self.dataset(config)}-entry", bad.source, bad.index)  # as in item_ids
        return self.dropped_row(config, run_id, pair_id, bad.origin, "read", bad.reason, bad.detail)

    def kept_row(self, config: C, run_id: str, pair_id: str, entry: Entry, images: "PairImages") -> PairRow:
        return PairRow(
            pair_id=pair_id, run_id=run_id, method=self.method, dataset=self.dataset(config),
            image_before=images.before, image_after=images.after, width=images.width, height=images.height,
            image_format=images.image_format, source_format=images.source_format, edit_category=entry.category,
            subset=entry.subset, origin=entry.origin, status="kept", created_at=utc_now(),
            **self.pair_fields(config, entry),
        )


@dataclass
class PairImages:
    """A pair's two images as stored (see ``pairsmith.storage.image_folder.stored_pair``)."""

    before: bytes
    after: bytes
    width: int  # of the before image, pixels
    height: int
    image_format: str
    source_format: str


class AnnotationListConfig(ImportConfig):
    """An importer that reads one published JSON list (``--annotations``) over one images folder."""

    annotations: str = Field(description="the published annotation file of one split (a JSON list)")
    images_dir: str = Field(description="folder the annotations' image names are relative to",
                            json_schema_extra={"option": "images"})
    split: Literal["train", "val", "test"] | None = Field(None, description="split of every entry (default: from "
                                                           "the file name)")


A = TypeVar("A", bound=AnnotationListConfig)


class AnnotationListImporter(Importer[A]):
    """Base of importers whose set is a JSON list per split (``train.json``, ...) and an images folder:
    a subclass names the published file stems (``published_splits``) and turns one object into an
    entry (``entry``)."""

    published_splits: ClassVar[dict[str, str]]  # file stem -> our split, e.g. {"valid": "val"}
    entry_fields: ClassVar[str]  # what one object holds, for messages
    folder_options = ("images_dir",)

    def input_files(self, config: A) -> list[Path]:
        return [Path(config.annotations)]

    def image_roots(self, config: A) -> list[Path]:
        return [Path(config.images_dir)]

    def read(self, config: A) -> list[Entry | BadEntry]:
        path = Path(config.annotations)
        data = read_json_file(path, "--annotations")
        if not isinstance(data, list):
            raise ValueError(f"--annotations {str(path)!r}: expected a JSON list of {{{self.entry_fields}}}, "
                             f"got {type(data).__name__}")
        split = split_from_name(path, self.published_splits, config.split, "--split")
        return [self.entry(path.name, i, raw, split) if isinstance(raw, dict) else
                BadEntry(i, path.name, BAD_ENTRY, f"item {i} is {type(raw).__name__}, not an object",
                         f"{self.name}:{path.name}#{i}")
                for i, raw in enumerate(data)]

    def entry(self, source: str, index: int, raw: dict, split: str) -> Entry | BadEntry:
        """One object of the list (``source``: the file's name) as an entry, or why it is not one."""
        raise NotImplementedError


def load_reason(reason: str) -> str:
    """An image check's reason as a ``load`` stage reason (``source_missing`` -> ``load_missing_image``);
    ``path_outside_root``, ``source_multiframe`` and ``source_no_such_frame`` keep their names (the
    same row in every flow that reads files)."""
    if reason in (PATH_OUTSIDE_ROOT, MULTIFRAME, NO_SUCH_FRAME):
        return reason
    if reason == "source_missing":
        return "load_missing_image"
    return "load_" + reason.removeprefix("source_")


def split_from_name(path: str | Path, published: dict[str, str], given: str | None, option: str) -> str:
    """The split of an annotation file: ``given`` if set, else looked up by the file's stem in
    ``published`` (e.g. ``{"valid": "val"}``); a ValueError asks for the option otherwise."""
    if given is not None:
        return given
    stem = Path(path).stem.lower()
    if stem in published:
        return published[stem]
    names = ", ".join(f"{k}.json" for k in published)
    raise ValueError(f"{str(path)!r}: cannot tell the split from the file name (published: {names}); give {option}")


def _source(origin: str) -> str:
    """The file part of an origin ``<dataset>:<file>#<where>``."""
    return origin.split(":", 1)[-1].split("#", 1)[0]
