"""The dataset card (``README.md``) of an ``--format hf`` export: what a reader of the Hub page needs.

The YAML header names the Parquet files of each split under a config named by the export's content
(``export-<key>``, see ``hf._content_key``). The body describes every column (units and box format),
the sources the rows come from with their licences as far as pairsmith knows them, the figures of
``pairsmith stats --dataset`` over the exported runs (``storage/dataset_stats.py``), each run's preset
(the ``configs/papers/`` file whose content gives the run's id, else "custom") and drop-off funnel
(read from the pinned ``stage_stats``), and the options and table versions that made
the export, so the export can be repeated (``pairsmith export --at TAG``).
"""

from __future__ import annotations

import json
from collections import Counter

from pairsmith.storage.box_format import BOX_TASKS

SOURCES: dict[str, tuple[str, str]] = {
    # name -> (what it is, licence as far as known; "not recorded" where pairsmith does not know it)
    "dig-render": ("CLEVR-style scenes rendered by pairsmith with Blender (DiG's recipe); no third-party images",
                   "made by pairsmith: no third-party rights in the images"),
    "med-edit": ("photos edited with Gemini by pairsmith's med-edit flow", "the source photos' licence (not recorded "
                 "by pairsmith) and the Gemini API terms for the edits"),
    "med-bench": ("the MED benchmark (Hallucination at a Glance; beccabai/hallu_med)", "original photos from DOCCI "
                  "and Visual Genome (CC BY 4.0); edits by the paper's authors with Gemini; see the repository"),
    "clevr-change": ("CLEVR-Change (Park et al. 2019, Seth-Park/RobustChangeCaptioning)",
                     "not recorded by pairsmith: see the dataset's repository"),
    "spot-the-diff": ("Spot-the-Diff (Jhamtani and Berg-Kirkpatrick 2018; frames of the VIRAT video dataset)",
                      "not recorded by pairsmith: see the dataset's repository and VIRAT's terms"),
    "image-edit-request": ("Image Editing Request (Tan et al. 2019)", "not recorded by pairsmith: see the dataset's "
                           "repository"),
    "imgdiff-replace": ("SDXL + Prompt-to-Prompt image pairs made by pairsmith (Img-Diff's recipe)",
                        "the generating models' licences (SDXL: CreativeML Open RAIL++-M)"),
    "imgdiff-remove": ("SDXL-turbo inpaintings made by pairsmith (Img-Diff's recipe)",
                       "the generating models' licences (SDXL-turbo: see its model card)"),
}

BOX_FRAMES = {
    "pixels": "absolute pixels of the picture shown (the first image; in the side-by-side layout the whole "
              "picture, whose left part at the origin is the first image, so the numbers are the same)",
    "norm1000": "integers 0-1000: x by the shown picture's width, y by its height (Qwen2-VL / Qwen3-VL); in the "
                "side-by-side layout the whole picture, bar and second image included",
    "resized-pixels": "absolute pixels of the shown picture after the model processor's resize (Qwen2.5-VL)",
}

FIELDS = [
    ("id", "string", "the sample id in pairsmith's `samples` table"),
    ("messages", "list of {role, content}", "the conversation; each `<image>` in a user turn stands for the next "
     "entry of `images`; the last turn is the answer"),
    ("images", "list of Image", "the pictures, bytes embedded as stored (PNG renders, JPEG photos): before and "
     "after image, or one side-by-side picture (before | 20 px black bar | after)"),
    ("boxes", "list of [x1, y1, x2, y2] (int64)", "grounding answers only (empty otherwise): one box per "
     "difference, pixel edges from the top-left corner (x2 - x1 is the width), in `box_format`"),
    ("box_format", "string", "the frame of `boxes` and of the prompt's coordinates (empty for tasks without boxes)"),
    ("task", "string", "diff-caption | grounding | med-mcq | med-diff-qa | object-presence-mcq"),
    ("split", "string", "train | val | test | bench (benchmark items, exported only when asked for)"),
    ("method", "string", "the pairsmith pipeline that made the sample"),
    ("category", "string", "edit category (MED) or change kinds, where known"),
    ("dataset", "string", "the source of the pair: a public set's name or the pipeline's (see Sources)"),
    ("subset", "string", "grounding: single | double (the number of differences is stated) | mixed"),
    ("pair_id", "string", "the image pair in pairsmith's `pairs` table"),
    ("run_id", "string", "the pairsmith run that made the sample (`pairsmith stats --run`, `pairsmith inspect`)"),
]


def dataset_card(name: str, files: dict[str, list[str]], key: str, options, counts: Counter, runs: Counter,
                 formats: set[str], store=None, tag: str | None = None) -> str:
    """The card's text. ``counts``: samples per (split, task, source); ``runs``: samples per run id;
    ``formats``: the box formats written; ``store``: the pinned store whose ``stage_stats`` hold the
    runs' funnels (None: no funnel section)."""
    lines = ["---", "configs:", f"- config_name: export-{key}", "  default: true", "  data_files:"]
    for split, names in files.items():
        lines += [f"  - split: {split}", "    path:"] + [f"    - {n}" for n in names]
    total = sum(counts.values())
    lines += ["---", "", f"# {name}", "",
              f"Image-difference samples exported by pairsmith (`pairsmith export --format hf`), {total} samples, "
              "images embedded. Load with `datasets.load_dataset(\"DIR\")` (this card), `load_dataset(\"parquet\", "
              "data_files=\"DIR/data/*.parquet\")` or `load_from_disk(\"DIR/hf_dataset\")`.", "",
              f"File and config names carry `{key}`, a hash of the exported rows: a re-export with other rows gets "
              "other names, so `datasets` never serves a previous export from its cache.", "",
              "## Fields", "", "| field | type | meaning |", "|---|---|---|"]
    lines += [f"| `{f}` | {t} | {m.replace('|', chr(92) + '|')} |" for f, t, m in FIELDS]
    layout = options.layout
    lines += ["", f"Layout: `{layout}`" + (" (one picture: before on the left, a 20 px black bar, after on the right)"
                                           if layout == "side-by-side" else " (two images per pair sample)") + "."]
    if formats:
        lines += ["", "Box formats in this export (tasks with boxes: " + ", ".join(BOX_TASKS) + "):", ""]
        lines += [f"- `{f}`: {BOX_FRAMES.get(f, f)}" for f in sorted(formats)]
    lines += ["", "## Contents", "", "| split | task | source | samples |", "|---|---|---|---|"]
    lines += [f"| {s} | {t} | {d} | {n} |" for (s, t, d), n in sorted(counts.items())]
    lines += ["", "## Sources and licences", "", "As far as pairsmith knows them; check each source's own terms "
              "before redistributing.", "", "| source | what | licence |", "|---|---|---|"]
    for source in sorted({d for _, _, d in counts}):
        what, licence = SOURCES.get(source, ("imported or made under this name", "not recorded by pairsmith"))
        lines.append(f"| {source} | {what} | {licence} |")
    if store is not None:
        lines += statistics_lines(store, set(runs))
        lines += ["", "## Runs and their funnels", "",
                  "Per run: the items each stage received, kept and dropped, with the top reasons "
                  "(`pairsmith inspect --run RUN` lists the dropped rows)."]
        from pairsmith.storage.dropped_rows import format_stage_totals, stage_totals

        presets = options.run_presets
        for run_id, n in sorted(runs.items()):
            preset = presets.get(run_id, "custom") if presets is not None else "not known (configs/papers/ not found)"
            lines += ["", f"### {run_id} ({n} samples in this export)", "", f"Preset: {preset}", "", "```",
                      format_stage_totals(stage_totals(store, run_id)), "```"]
    lines += ["", "## Export config", "", "```yaml"]
    config = options.model_dump(exclude={"batch_bytes"})
    lines += [f"{k}: {json.dumps(v)}" + ("  # all" if v in (None, []) and k in ("tasks", "run_id") else "")
              for k, v in config.items()]
    if store is not None:
        lines.append(f"database: {store.uri}")
        try:
            from pairsmith.storage.versions import current_versions

            lines.append("table_versions: {" + ", ".join(f"{t}: {v}" for t, v in sorted(current_versions(store).items())) + "}")
        except Exception:  # a store without versions (a test double): the card still says the rest
            pass
    if tag:
        lines.append(f"tag: {tag}  # pairsmith export --at {tag} repeats this export")
    lines += ["```", ""]
    return "\n".join(lines)


def statistics_lines(store, run_ids: set[str]) -> list[str]:
    """The card's "Statistics" section: ``pairsmith stats --dataset``'s report over the exported runs
    (all their rows, every split: an export that leaves out tasks or splits counts them here too)."""
    from pairsmith.storage.dataset_stats import dataset_stats, format_dataset_stats

    report = format_dataset_stats(dataset_stats(store, run_ids))
    return ["", "## Statistics", "",
            "The figures `pairsmith stats --dataset` reports (the papers' data statistics: DiG supp. §7 subsets, "
            "K and change kinds; OmniDiff §7, Figs. 4-5 caption length and most frequent words), over every row "
            "of the runs this export reads, per dataset: pairs per subset, K and change kind, samples per task "
            "and split and per category, caption length in words and the most frequent words, and the funnel "
            "summed over the runs.", "", "```", report, "```"]
