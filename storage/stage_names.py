"""Stage names stored before they were unique across the house, and the names they have now.

Every stage name means one thing in every flow (issue 25: ``align`` was caption alignment in
med-edit and image registration in propose-regions; ``plan``, ``propose``, ``load`` and ``samples``
repeated; med-edit's ``plan`` and ``align`` steps have since given way to MED's own, ``med-*``). Databases written before keep the old names in ``stage_stats.stage`` and
``pairs.drop_stage``; whatever reads them back (the funnel, resume's per-item redo, a flow's retry
rule) reads them through ``current``, so an old batch and a new one count under one name.

A stage-stats row's id (``stat_id``) keeps hashing the name the stage was first stored under
(``first_name``): a stored batch redone under today's names replaces its own rows instead of adding
rows beside them, and a new run's ids are those the same run had before the rename.
"""

from __future__ import annotations

# flow -> {stored name: today's name}; "import-*" stands for every importer's flow (import-<importer>)
RENAMED: dict[str, dict[str, str]] = {
    "dig-render": {"plan": "scene_plan", "samples": "dig_samples"},
    "import-*": {"load": "image_load", "samples": "import_samples"},
    "med-edit": {"samples": "med_samples"},
    "propose-regions": {"align": "register", "propose": "region_propose"},
}


def _renames(flow: str | None) -> dict[str, str]:
    if not flow:
        return {}
    if flow in RENAMED:
        return RENAMED[flow]
    return RENAMED["import-*"] if flow.startswith("import-") else {}


def current(flow: str | None, name: str | None) -> str | None:
    """Today's name of stage ``name`` as ``flow`` stored it (unchanged if it was never renamed)."""
    return _renames(flow).get(name, name) if name is not None else None


def first_name(flow: str | None, name: str) -> str:
    """The name stage ``name`` of ``flow`` was first stored under: what its stage-stats ids hash."""
    for old, new in _renames(flow).items():
        if new == name:
            return old
    return name
