"""What every export format shares: which samples, how they stream out, where files go, what is counted.

A format module (``llava.py``, ``sharegpt.py``, ``hf.py``) only turns one ``ExportItem`` into its
record; the base does the rest, the same way for every format:

* **which samples**: kept samples (their pair is ``kept``) of the chosen tasks, run and splits. The
  default is the format's ``default_splits``, the ``train`` split only unless a format says otherwise:
  ``val`` / ``test`` / ``bench`` items enter an export only when named (``--split``), so benchmark
  questions never leak into training data. A format that writes only some tasks (``tasks``) reads only
  those;
* **one streaming pass**: samples are scanned once in batches bounded in bytes, and each batch's
  pair images are fetched by key (``PairStore.scan`` / ``take``); records are written as they go, so
  memory stays flat however large the database, and no single Arrow array ever holds more than a
  batch (no 2 GiB offset overflow);
* **an atomic folder**: everything is written into a temporary folder beside ``--out``, renamed to
  ``--out`` at the end. A failed export leaves ``--out`` as it was; a non-empty ``--out`` is refused
  unless ``overwrite`` (then replaced whole, never mixed with older files). ``--overwrite`` replaces only
  a folder pairsmith itself exported to (it holds ``.pairsmith-export``, and nothing else was added),
  never the database or a folder holding or inside it; a ``.partial`` folder a killed export left is
  swept by the next export into the same parent folder once its writer is gone. File names come from ids
  checked against a safe pattern (others are hashed), and each path is checked to resolve inside
  the folder, so no id, ``..`` or symlink writes anywhere else;
* **images**: stored bytes are written as they are, under their real extension (PNG renders, JPEG
  photos, an imported WebP as ``.webp``); a side-by-side picture of photos is JPEG, of renders PNG.
  A sample whose image cannot be read is skipped and counted (``image_unreadable``), never the export;
* **boxes**: grounding samples (the tasks in ``BOX_TASKS``) carry their boxes, and their prompt and
  answer, in the chosen ``box_format`` (``storage/box_format.py``), in the frame of the picture shown.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pairsmith.storage.box_format import BOX_FORMATS, BOX_TASKS, BoxFormat
from pairsmith.storage.ids import stable_hash
from pairsmith.storage.pair_images import (
    IMAGE, encode_like, image_extension, open_image, side_by_side, side_by_side_text,
)

Layout = Literal["multi", "side-by-side"]
SPLITS = ("train", "val", "test", "bench")
SAMPLE_COLUMNS = ("sample_id", "pair_id", "run_id", "method", "task", "subset", "conversation", "answer", "boxes",
                  "category", "split", "dataset", "image")
META_COLUMNS = ("task", "split", "method", "category", "dataset", "subset", "pair_id", "run_id")
EXPORT_BATCH_BYTES = 4 << 20  # Arrow bytes; as Python objects, sample text takes several times that
_SAFE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,150}")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,160}\.[a-z0-9]{1,5}")


class ExportOptions(BaseModel):
    """What to export and how; every format reads the same options."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    run_id: str | None = Field(None, description="only samples of this run")
    run_presets: dict[str, str] | None = Field(
        None, exclude=True, description="run id -> the paper preset whose content gave it, for the HF card "
        "(the CLI fills it from flows/papers.py); None: the card says the preset is not known")
    tasks: list[str] = Field(default_factory=list, description="only these tasks (empty: all)")
    splits: list[str] = Field(default_factory=lambda: ["train"],
                              description="splits to export; bench and test only when named")
    layout: Layout = Field("multi", description="two images per pair sample, or one side-by-side picture")
    box_format: str = Field("pixels", description=f"answer frame of grounding boxes: {', '.join(BOX_FORMATS)}")
    processor: str | None = Field(None, description="resized-pixels: image processor folder (default Qwen2.5-VL's)")
    dataset_name: str | None = Field(None, description="name of the dataset in registries (default pairsmith_<folder>)")
    absolute_paths: bool = Field(False, description="image and file paths absolute, so any dataset_dir works")
    batch_bytes: int = Field(EXPORT_BATCH_BYTES, ge=1 << 20, description="bytes read per batch")

    @field_validator("splits")
    @classmethod
    def _splits(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if s not in SPLITS]
        if bad or not value:
            raise ValueError(f"split {bad[0] if bad else '(none)'!r}: use {', '.join(SPLITS)}")
        return value

    def where(self) -> str:
        from pairsmith.storage.store import sql_in, sql_literal

        clauses = [sql_in("split", self.splits)]
        if self.run_id:
            clauses.append(f"run_id = {sql_literal(self.run_id)}")
        if self.tasks:
            clauses.append(sql_in("task", self.tasks))
        return " AND ".join(clauses)

    def boxes(self) -> BoxFormat:
        return BoxFormat.named(self.box_format, self.processor)

    def name_for(self, out: Path) -> str:
        """The dataset name registries get: the option, or ``pairsmith_<folder name>``."""
        name = self.dataset_name or "pairsmith_" + out.name
        return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


@dataclass
class ExportImage:
    name: str  # file name inside images/, checked safe
    data: bytes


@dataclass
class ExportItem:
    """One sample as formats write it: ids and metadata, turns laid out, its pictures, its boxes."""

    id: str
    meta: dict[str, Any]
    turns: list[tuple[str, str]]
    images: list[ExportImage]
    boxes: list[list[int]]
    box_format: str


@dataclass
class ExportResult:
    format: str
    out: Path
    samples: int
    images: int
    files: list[str]
    dataset_name: str
    skipped: dict[str, int] = field(default_factory=dict)


class ExportFormat:
    """One export format: subclasses set ``name`` / ``help`` and write items in ``write``."""

    name: ClassVar[str]
    help: ClassVar[str]
    writes_image_files: ClassVar[bool] = True
    tasks: ClassVar[tuple[str, ...]] = ()  # the only tasks the format can write (empty: any)
    default_splits: ClassVar[tuple[str, ...]] = ("train",)  # splits exported when --split is not given

    def __init__(self, folder: Path, out: Path, options: ExportOptions):
        self.folder = folder  # the temporary folder being written
        self.out = out  # what it becomes: paths inside records point here
        self.options = options
        self.dataset_name = options.name_for(out)
        self.files: list[str] = []
        self.n_samples = 0
        self.n_images = 0
        self._written: set[str] = set()
        self._images: Path | None = None

    @classmethod
    def check_options(cls, options: ExportOptions) -> None:
        """Raise ValueError (one line) for options this format cannot write, before anything is read."""

    def begin(self) -> None:
        """Open the format's files."""

    def write(self, item: ExportItem) -> None:
        """Write one item; raise ``SkipSample(reason)`` to leave it out, counted under ``reason``."""
        raise NotImplementedError

    def finish(self) -> None:
        """Close the format's files (and registry entries)."""

    def path_of(self, relative: str) -> str:
        """A path as records name it: relative to the export folder, or absolute under ``--out``."""
        return str(self.out.resolve() / relative) if self.options.absolute_paths else relative

    def image_paths(self, item: ExportItem) -> list[str]:
        """Write ``item``'s image files (each once) and return their paths as records name them."""
        if self._images is None:
            self._images = inside(self.folder, "images")
            self._images.mkdir()
        paths = []
        for image in item.images:
            if image.name not in self._written:
                if not _SAFE_NAME.fullmatch(image.name):  # names are built from safe stems: never taken
                    raise ValueError(f"export file name {image.name!r} is not a plain file name")
                (self._images / image.name).write_bytes(image.data)
                self._written.add(image.name)
                self.n_images += 1
            paths.append(self.path_of(f"images/{image.name}"))
        return paths

    def open_json_list(self, name: str) -> "JsonList":
        self.files.append(name)
        return JsonList(inside(self.folder, name))


class JsonList:
    """A JSON list written one record at a time (the file is valid JSON once closed)."""

    def __init__(self, path: Path):
        self._f = path.open("w", encoding="utf-8")
        self._f.write("[")
        self.n = 0

    def append(self, record: dict) -> None:
        self._f.write(("\n" if self.n == 0 else ",\n") + json.dumps(record, ensure_ascii=False))
        self.n += 1

    def close(self) -> None:
        self._f.write("\n]\n")
        self._f.close()


def inside(folder: Path, relative: str) -> Path:
    """``folder / relative``, refusing any path that would resolve outside ``folder``."""
    target = (folder / relative).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise ValueError(f"export path {relative!r} would leave the export folder")
    return target


def safe_stem(identifier: str) -> str:
    """A file-name stem for an id: the id itself when it is plain, else a hash of it."""
    return identifier if _SAFE_STEM.fullmatch(identifier) else "id-" + stable_hash(identifier, 24)


MARKER = ".pairsmith-export"
"""The file in every folder pairsmith wrote as an export (JSON: format, tag, database, the entries it
wrote). While it is written, the export's temporary folder beside ``--out`` is named after the host
and process writing it, so the sweep of a later export can tell a dead writer's folder. ``--overwrite`` replaces only a
folder that has it and nothing else beside what it lists."""
PARTIAL, OLD = ".partial-", ".old-"


def export_path(out: Path) -> Path:
    """``out`` made absolute without following links (``..`` and ``.`` become the folders they name)."""
    return Path(os.path.abspath(os.path.expanduser(str(out))))


def _local_db(uri: str | None) -> Path | None:
    from pairsmith.storage.db_uri import is_object_store

    if not uri or is_object_store(uri):
        return None
    return Path(uri.removeprefix("file://")).expanduser().resolve()


def check_out(out: Path, overwrite: bool, db_uri: str | None = None) -> Path:
    """The absolute ``--out``, after refusing any folder pairsmith must not replace; ValueError (one
    line naming why) otherwise, with nothing created or deleted.

    Refused always: ``--out`` that is, holds or is inside the database ``db_uri``; a file or a link;
    a non-empty folder that is not a pairsmith export (no ``.pairsmith-export``) or holds entries the
    export did not write. A folder pairsmith exported to is refused unless ``overwrite``."""
    out = export_path(out)
    shown = repr(str(out))
    if out.parent == out:
        raise ValueError(f"--out {shown} is a filesystem root; choose a new folder for the export")
    db = _local_db(db_uri)
    if db is not None:
        real = out.resolve()
        if real == db or db.is_relative_to(real):
            raise ValueError(f"--out {shown} holds the database {str(db)!r}; choose a folder outside it")
        if real.is_relative_to(db):
            raise ValueError(f"--out {shown} is inside the database {str(db)!r}; choose a folder outside it")
    if out.is_symlink():
        raise ValueError(f"--out {shown} is a symbolic link; give the folder itself or a new one")
    if not out.exists():
        return out
    if not out.is_dir():
        raise ValueError(f"--out {shown} is a file, not an export folder; choose a new or empty folder")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return out
    marker = read_marker(out)
    if marker is None:
        raise ValueError(f"--out {shown} is not empty and is not a pairsmith export (no {MARKER}); "
                         "pairsmith replaces only its own exports: choose a new or empty folder")
    other = [e for e in entries if e != MARKER and e not in set(marker.get("entries", []))]
    if other:
        raise ValueError(f"--out {shown} is a pairsmith export with other files added ({', '.join(other[:3])}"
                         f"{', ...' if len(other) > 3 else ''}); pairsmith replaces only what it wrote: "
                         "move them or choose a new folder")
    if not overwrite:
        raise ValueError(f"--out {shown} holds an earlier export; pass --overwrite to replace it, or choose a new folder")
    return out


def read_marker(folder: Path) -> dict | None:
    """The ``.pairsmith-export`` record of ``folder``, None when it has none (or not one pairsmith wrote)."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("pairsmith_export") == 1 else None


def write_marker(folder: Path, **fields: Any) -> None:
    record = {"pairsmith_export": 1, "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields}
    (folder / MARKER).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


_LEFTOVER = re.compile(r"\..+\.(?:partial|old)-(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.(?P<made>\d+)\.[A-Za-z0-9_]+")


def _temporary(parent: Path, out: Path, kind: str) -> Path:
    """A new hidden folder beside ``out`` whose name says who made it and when
    (``.<name>.partial-<host>.<pid>.<unix time>.<random>``), so a kill at any moment leaves a
    folder the sweep can judge."""
    from pairsmith.storage.process_owner import host_name

    return Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}{kind}{host_name()}.{os.getpid()}.{int(time.time())}."))


def sweep_leftovers(parent: Path) -> list[Path]:
    """Remove the ``.<name>.partial-*`` / ``.<name>.old-*`` folders in ``parent`` that an export killed
    before it finished left, and only those whose writer is gone (``storage/process_owner.py``: on this
    host its pid is gone or was reused; elsewhere a day old). Returns what it removed."""
    from pairsmith.storage.process_owner import owner_is_gone

    removed = []
    try:
        candidates = [p for p in parent.iterdir() if _LEFTOVER.fullmatch(p.name)]
    except OSError:
        return removed
    for folder in candidates:
        if folder.is_symlink():
            continue  # not ours: never touched
        owner = _LEFTOVER.fullmatch(folder.name)
        if owner_is_gone(owner["host"], int(owner["pid"]), float(owner["made"])):
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
            else:  # a contact sheet's half-written file
                folder.unlink(missing_ok=True)
            removed.append(folder)
    return removed


def open_folder(out: Path, overwrite: bool, db_uri: str | None = None) -> Path:
    """The temporary folder beside ``out`` to write into, after ``check_out`` and sweeping what dead
    exports left beside it; ValueError (one line) when ``out`` cannot be used or its folder cannot be written."""
    out = check_out(out, overwrite, db_uri)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        sweep_leftovers(parent)
        folder = _temporary(parent, out, PARTIAL)
        folder.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; the export is a folder like any other
        return folder
    except OSError as err:
        raise ValueError(f"--out {str(out)!r}: cannot write in {str(parent)!r} ({err.strerror or err})") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _commit(folder: Path, out: Path, overwrite: bool, db_uri: str | None) -> None:
    """Put the finished folder in place of ``out`` (an empty folder, or an earlier export when overwriting),
    checking ``out`` again: another process may have put something there meanwhile."""
    out = check_out(out, overwrite, db_uri)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if out.exists():
        old = _temporary(out.parent, out, OLD)
        try:
            # a kill between the renames leaves a folder the next export sweeps (its name says whose)
            os.replace(out, old / "replaced")
            try:
                os.replace(folder, out)
            except OSError:
                os.replace(old / "replaced", out)  # the earlier export goes back
                raise
        finally:
            if out.exists() or not (old / "replaced").exists():
                shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(folder, out)


@contextmanager
def _progress_bar(total: int, description: str, on: bool):
    """A rich progress bar on stderr over ``total`` samples when ``on``; yields ``advance(n)``."""
    if not on:
        yield lambda n: None
        return
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(file=sys.stderr)) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def run_export(store, out: Path, fmt: type[ExportFormat], options: ExportOptions, overwrite: bool = False,
               tag: str | None = None, progress: bool = False) -> ExportResult:
    """Export the kept samples ``options`` select from ``store`` (a ``PairStore``) into ``out``
    (``progress``: a bar over the samples on stderr).

    Raises ValueError (one line) for an unusable ``--out`` (``check_out``: never the database, never a
    folder pairsmith did not export to) or when nothing matches; ``out`` is then untouched. The work
    happens in a temporary folder beside ``out``, renamed into place at the end; ``tag`` (the
    database tag the export read) is recorded in its ``.pairsmith-export``.
    """
    options = _for_format(options, fmt)
    fmt.check_options(options)
    where = options.where()
    boxes = options.boxes()
    total = store.count("samples", where)
    if total == 0:
        raise ValueError(f"no samples match {where} in {store.uri!r}")
    out = export_path(out)
    db_uri = getattr(store, "uri", None)
    folder = open_folder(out, overwrite, db_uri)
    try:
        writer = fmt(folder, out, options)
        writer.store = store  # the pinned view, for formats that describe their runs (the hf card)
        writer.begin()
        with _progress_bar(total, f"exporting {fmt.name}", progress) as advance:
            skipped = _stream(store, where, options, boxes, writer, advance)
        writer.finish()
        n = writer.n_samples
        if n == 0:
            reasons = ", ".join(f"{r}: {c}" for r, c in skipped.most_common()) or "none"
            raise ValueError(f"no kept samples to export among those matching {where} (skipped: {reasons})")
        write_marker(folder, format=fmt.name, tag=tag, db=db_uri,
                     entries=sorted(p.name for p in folder.iterdir() if p.name != MARKER))
        _commit(folder, out, overwrite, db_uri)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return ExportResult(fmt.name, out, n, writer.n_images, writer.files, writer.dataset_name, dict(skipped))


def _for_format(options: ExportOptions, fmt: type[ExportFormat]) -> ExportOptions:
    """``options`` with the format's default splits (when none were named) and its tasks only."""
    update: dict[str, Any] = {}
    if "splits" not in options.model_fields_set:
        update["splits"] = list(fmt.default_splits)
    if fmt.tasks:
        tasks = [t for t in options.tasks if t in fmt.tasks] if options.tasks else list(fmt.tasks)
        if not tasks:
            raise ValueError(f"--task {', '.join(options.tasks)}: --format {fmt.name} writes {', '.join(fmt.tasks)} only")
        update["tasks"] = tasks
    return options.model_copy(update=update) if update else options


def _stream(store, where: str, options: ExportOptions, boxes: BoxFormat, writer: ExportFormat,
            advance=lambda n: None) -> Counter:
    """The one pass: sample batches, their pairs' images by key, items to the writer (``advance``: samples
    done, per batch); returns skip counts."""
    skipped: Counter = Counter()
    kept = {r["pair_id"] for r in store.read("pairs", where="status = 'kept'", columns=["pair_id"]).to_pylist()}
    present = set(store.table("samples").schema.names)
    columns = [c for c in SAMPLE_COLUMNS if c in present]
    for batch in store.scan("samples", where, columns, batch_bytes=options.batch_bytes):
        by_pair: dict[str, list[dict]] = {}
        for sample in batch:
            if sample["pair_id"] in kept:
                by_pair.setdefault(sample["pair_id"], []).append(sample)
            else:
                skipped["pair_not_kept"] += 1
        need = [p for p, samples in by_pair.items() if any(not s.get("image") for s in samples)]
        for p in set(by_pair) - set(need):  # samples that show their own picture only
            _write_pair(writer, {"pair_id": p}, by_pair.pop(p), options, boxes, skipped)
        for chunk in store.take("pairs", need, ["image_before", "image_after"], batch_bytes=options.batch_bytes):
            for pair in chunk:
                _write_pair(writer, pair, by_pair.pop(pair["pair_id"]), options, boxes, skipped)
        for samples in by_pair.values():  # kept pairs missing from the pinned table
            skipped["pair_missing"] += len(samples)
        advance(len(batch))
    return skipped


def _write_pair(writer: ExportFormat, pair: dict, samples: list[dict], options: ExportOptions, boxes: BoxFormat,
                skipped: Counter) -> None:
    pictures: list[_Pictures | None] = []  # the pair's pictures, built on first use
    for sample in samples:
        try:
            writer.write(_item(sample, pair, pictures, options, boxes))
        except SkipSample as skip:
            skipped[skip.reason] += 1
            continue
        writer.n_samples += 1


class SkipSample(Exception):
    """A sample left out of an export, counted under ``reason`` (``ExportResult.skipped``)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Pictures:
    images: list[ExportImage]
    shown: tuple[int, int]  # size of the picture the model sees (side-by-side: the whole picture)
    original: tuple[int, int]  # size of the before image, the frame stored boxes and prompts use


def _item(sample: dict, pair: dict, cache: list, options: ExportOptions, boxes: BoxFormat) -> ExportItem:
    sid = sample["sample_id"]
    own = sample.get("image")
    if own:  # the sample's own picture (Img-Diff's side-by-side with red boxes), in any layout
        pictures = _decoded(lambda: _own_picture(sid, own))
    else:
        if not cache:
            cache.append(_decoded(lambda: _pair_pictures(pair, options.layout)))
        pictures = cache[0]
    boxes_asked = sample["task"] in BOX_TASKS
    side = options.layout == "side-by-side" and not own
    turns = [(m["role"], m["content"]) for m in sample["conversation"]]
    if side:
        turns = [(role, side_by_side_text(text, boxes_asked)) for role, text in turns]
    if sum(text.count(IMAGE) for _, text in turns) != len(pictures.images):
        raise SkipSample("image_count_mismatch")
    model_boxes: list[list[int]] = []
    if boxes_asked:
        turns, model_boxes = boxes.grounding(turns, sample["boxes"] or [], pictures.original, pictures.shown, side)
    meta = {k: sample.get(k) for k in META_COLUMNS}
    return ExportItem(sid, meta, turns, pictures.images, model_boxes, boxes.name if boxes_asked else "")


def _decoded(build) -> _Pictures:
    """Build a sample's pictures; unreadable bytes skip the sample (``image_unreadable``), not the export."""
    try:
        return build()
    except SkipSample:
        raise
    except Exception:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, DecompressionBombError ...
        raise SkipSample("image_unreadable") from None


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def _own_picture(sample_id: str, data: bytes) -> _Pictures:
    size = _size(data)
    return _Pictures([ExportImage(f"{safe_stem(sample_id)}.{image_extension(data)}", data)], size, size)


def _pair_pictures(pair: dict, layout: Layout) -> _Pictures:
    before, after = pair.get("image_before"), pair.get("image_after")
    if not before or not after:
        raise SkipSample("pair_without_images")
    stem = safe_stem(pair["pair_id"])
    if layout == "side-by-side":
        first = open_image(before)
        picture = side_by_side(first, open_image(after))
        data, ext = encode_like(picture, [before, after])
        return _Pictures([ExportImage(f"{stem}_pair.{ext}", data)], picture.size, first.size)
    size = _size(before)
    _size(after)  # both must be pictures PIL can open, or the sample is skipped
    return _Pictures([ExportImage(f"{stem}_before.{image_extension(before)}", before),
                      ExportImage(f"{stem}_after.{image_extension(after)}", after)], size, size)
