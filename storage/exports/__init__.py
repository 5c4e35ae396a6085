"""Export formats, one module each; ``EXPORT_FORMATS`` is the registry the CLI reads its choices from.

Adding a format is one module with an ``ExportFormat`` subclass (``base.py``: the base selects the
samples, streams them with their images in bounded batches, writes the atomic folder and counts)
plus one entry below. Entries name the class by module path, so listing the formats (``pairsmith
--help``) imports none of them.
"""

from __future__ import annotations

import importlib
from pathlib import Path

EXPORT_FORMATS: dict[str, str] = {
    "llava": "pairsmith.storage.exports.llava:LlavaFormat",
    "sharegpt": "pairsmith.storage.exports.sharegpt:ShareGPTFormat",
    "hf": "pairsmith.storage.exports.hf:HFFormat",
    "clevr-change": "pairsmith.storage.exports.clevr_change:ClevrChangeFormat",
}


def format_class(name: str):
    """The ``ExportFormat`` subclass registered as ``name``; ValueError naming the choices if none."""
    if name not in EXPORT_FORMATS:
        raise ValueError(f"--format {name!r}: use one of {', '.join(EXPORT_FORMATS)}")
    module, cls = EXPORT_FORMATS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def export(store, out: Path, fmt: str, options=None, overwrite: bool = False, tag: str | None = None,
           progress: bool = False):
    """Export the kept samples of ``store`` (a ``PairStore``) selected by ``options`` (an ``ExportOptions``,
    default: the train split) as ``fmt`` into ``out`` (``progress``: a bar on stderr); returns an ``ExportResult``."""
    from pairsmith.storage.exports.base import ExportOptions, run_export

    return run_export(store, Path(out), format_class(fmt), options or ExportOptions(), overwrite, tag, progress)
