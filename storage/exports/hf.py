"""``hf``: a Hugging Face ``datasets`` dataset with the images embedded, as Parquet shards and ``save_to_disk``.

Written with ``datasets`` itself (``Dataset.from_list(...).to_parquet``, ``save_to_disk``), never by hand:

* ``data/<split>-00000-of-0000N-<key>.parquet``: shards of about 128 MiB, loadable with
  ``load_dataset("parquet", data_files="OUT/data/*.parquet")`` or ``load_dataset("OUT")`` (the
  ``README.md`` card's ``configs`` names the files per split, so the folder is never mistaken for an
  image folder). ``<key>`` hashes the exported rows and names the card's config too (``export-<key>``):
  ``datasets`` caches by those names, so a re-export never loads the previous export's rows;
* ``README.md``: the dataset card (``hf_card.py``): fields, sources and licences, funnels, config;
* ``hf_dataset/``: the same rows as ``DatasetDict.save_to_disk``, for ``load_from_disk``.

Columns: ``id``, ``messages`` (``[{"role", "content"}]`` with ``<image>`` placeholders, as TRL's
vision SFT and LLaMA-Factory read them), ``images`` (a list of ``datasets.Image``, bytes embedded,
decoded to PIL on access), ``boxes`` / ``box_format``, and the metadata columns ``task``, ``split``,
``method``, ``category``, ``dataset``, ``subset``, ``pair_id``, ``run_id``. ``push_to_hub`` uploads
the Parquet dataset to a Hub repository (``HF_ENDPOINT`` / ``HF_TOKEN`` as ``huggingface_hub`` reads them).
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from pathlib import Path

from pairsmith.storage.exports.base import META_COLUMNS, ExportFormat, ExportItem, inside
from pairsmith.storage.exports.hf_card import dataset_card

SHARD_BYTES = 128 << 20
DATA_DIR = "data"
DISK_DIR = "hf_dataset"


def features():
    import datasets

    text = datasets.Value("string")
    return datasets.Features({
        "id": text,
        "messages": datasets.List({"role": text, "content": text}),
        "images": datasets.List(datasets.Image()),
        "boxes": datasets.List(datasets.List(datasets.Value("int64"))),
        "box_format": text,
        **{name: text for name in META_COLUMNS},
    })


class _quiet_progress:
    """``datasets`` draws progress bars on stderr; an export reports its own counts instead."""

    def __enter__(self):
        import datasets

        self.was = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()

    def __exit__(self, *exc):
        import datasets

        if self.was:
            datasets.enable_progress_bars()


class HFFormat(ExportFormat):
    name = "hf"
    help = "Hugging Face datasets: Parquet shards + save_to_disk, images embedded (--push-to-hub REPO)"
    writes_image_files = False

    def begin(self) -> None:
        self._buffers: dict[str, list[dict]] = {}
        self._bytes: dict[str, int] = {}
        self._shards: dict[str, list[Path]] = {}
        self._counts: Counter = Counter()  # samples per (split, task, source), for the card
        self._runs: Counter = Counter()
        self._box_formats: set[str] = set()
        inside(self.folder, DATA_DIR).mkdir()

    def write(self, item: ExportItem) -> None:
        split = item.meta["split"]
        self._buffers.setdefault(split, []).append({
            "id": item.id,
            "messages": [{"role": role, "content": text} for role, text in item.turns],
            "images": [{"bytes": image.data, "path": image.name} for image in item.images],
            "boxes": item.boxes, "box_format": item.box_format,
            **{k: None if v is None else str(v) for k, v in item.meta.items()},
        })
        self.n_images += len(item.images)
        self._counts[(split, item.meta.get("task") or "", item.meta.get("dataset") or item.meta.get("method") or "")] += 1
        self._runs[item.meta.get("run_id") or ""] += 1
        if item.box_format:
            self._box_formats.add(item.box_format)
        self._bytes[split] = self._bytes.get(split, 0) + sum(len(i.data) for i in item.images)
        if self._bytes[split] >= SHARD_BYTES:
            self._flush(split)

    def _flush(self, split: str) -> None:
        import datasets

        rows = self._buffers.pop(split, [])
        self._bytes[split] = 0
        if rows:
            shard = inside(self.folder, f"{DATA_DIR}/{split}-{len(self._shards.get(split, [])):05d}.parquet")
            with _quiet_progress():
                datasets.Dataset.from_list(rows, features=features()).to_parquet(str(shard))
            self._shards.setdefault(split, []).append(shard)

    def finish(self) -> None:
        import datasets

        for split in list(self._buffers):
            self._flush(split)
        self.content_key = _content_key(self._shards)
        files: dict[str, list[str]] = {}
        for split, shards in self._shards.items():
            for k, shard in enumerate(shards):
                final = shard.with_name(f"{split}-{k:05d}-of-{len(shards):05d}-{self.content_key}.parquet")
                shard.rename(final)
                files.setdefault(split, []).append(f"{DATA_DIR}/{final.name}")
        self.files += [f for names in files.values() for f in names]
        cache = inside(self.folder, ".cache")
        with _quiet_progress():
            parts = {split: datasets.Dataset.from_parquet([str(self.folder / f) for f in names],
                                                           features=features(), cache_dir=str(cache))
                     for split, names in files.items()}
            datasets.DatasetDict(parts).save_to_disk(str(inside(self.folder, DISK_DIR)))
        del parts
        shutil.rmtree(cache, ignore_errors=True)
        self.files.append(DISK_DIR)
        inside(self.folder, "README.md").write_text(dataset_card(
            self.dataset_name, files, self.content_key, self.options, self._counts, self._runs, self._box_formats,
            getattr(self, "store", None)))
        self.files.append("README.md")


def _content_key(shards: dict[str, list[Path]]) -> str:
    """12 hex digits of SHA-256 over every shard's split, position and bytes: the same rows give the same
    key, other rows another one. ``datasets`` caches ``load_dataset(DIR)`` by folder name, config name
    and data file names, so both carry this key: a re-export (``--overwrite`` or a folder of the same
    name) never loads the previous export's cached rows."""
    digest = hashlib.sha256()
    for split in sorted(shards):
        for k, shard in enumerate(shards[split]):
            digest.update(f"{split}/{k}\n".encode())
            with shard.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:12]


def push_to_hub(out: Path, repo: str) -> str:
    """Upload the export's Parquet dataset to the Hub repository ``repo``; returns its URL.

    Raises ValueError with one line when the Hub cannot be reached or refuses the upload.
    """
    import datasets

    parts = {}
    for shard in sorted((out / DATA_DIR).glob("*.parquet")):
        parts.setdefault(shard.name.split("-")[0], []).append(str(shard))
    with _quiet_progress():
        dataset = datasets.DatasetDict({split: datasets.Dataset.from_parquet(paths, features=features())
                                        for split, paths in parts.items()})
    try:
        with _quiet_progress():
            info = dataset.push_to_hub(repo)
    except Exception as err:  # requests / huggingface_hub raise many kinds; the user needs the reason
        from huggingface_hub import constants

        reason = " ".join(str(err).split())[:200]
        raise ValueError(f"--push-to-hub {repo!r}: the Hub at {constants.ENDPOINT} refused or could not be "
                         f"reached ({type(err).__name__}: {reason})") from None
    return getattr(info, "commit_url", None) or f"{repo}"
