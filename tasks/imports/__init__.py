"""Importers of published image-difference datasets: one module per dataset, one line in ``IMPORTERS``.

``pairsmith import <name>`` is generated from this registry and the importer's pydantic config
(``flows/cli/imports.py``); the ``import`` flow (``flows/import_dataset.py``) runs any
of them. Entries are "module:class" strings with a one-line summary, so listing the commands
imports nothing heavy. Adding a dataset: write ``tasks/imports/<name>.py`` (an ``Importer``
subclass and its config, see ``base.py``), add its line here, and test it.
"""

from __future__ import annotations

import importlib

IMPORTERS: dict[str, tuple[str, str]] = {
    "med-bench": ("pairsmith.tasks.imports.med_bench:MedBenchImporter",
                  "the MED benchmark (Hallucination at a Glance) as pairs and med-mcq samples"),
    "clevr-change": ("pairsmith.tasks.imports.clevr_change:ClevrChangeImporter",
                     "CLEVR-Change (Park et al. 2019): change and distractor pairs with their captions"),
    "spot-the-diff": ("pairsmith.tasks.imports.spot_the_diff:SpotTheDiffImporter",
                      "Spot-the-Diff (Jhamtani & Berg-Kirkpatrick 2018): street-scene pairs and captions"),
    "image-edit-request": ("pairsmith.tasks.imports.image_edit_request:ImageEditRequestImporter",
                           "Image Editing Request (Tan et al. 2019): photo edits and their requests"),
    "birds-to-words": ("pairsmith.tasks.imports.birds_to_words:BirdsToWordsImporter",
                       "Birds-to-Words (Forbes et al. 2019): bird photo pairs and their comparisons"),
    "clevr-dc": ("pairsmith.tasks.imports.clevr_dc:ClevrDcImporter",
                 "CLEVR-DC (Kim et al. 2021): changes under drastic viewpoint shifts, with captions"),
    "folder": ("pairsmith.tasks.imports.pair_folder:PairFolderImporter",
               "any set as a JSONL of before/after image paths and captions"),
}


def load_importer(name: str):
    """The importer registered as ``name`` (an instance); ValueError naming the choices otherwise."""
    if name not in IMPORTERS:
        raise ValueError(f"unknown importer {name!r}; importers are {', '.join(IMPORTERS)}")
    module, attribute = IMPORTERS[name][0].split(":")
    return getattr(importlib.import_module(module), attribute)()
