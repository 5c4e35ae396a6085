"""What a database holds, per dataset: the figures the papers report about their data (``pairsmith stats --dataset``).

A *dataset* is a pair's ``dataset`` column, or its ``method`` where that is null (our own pipelines).
Per dataset, from the stored rows (no image bytes are read):

* pairs kept and dropped;
* kept pairs counted by every categorical pairs column that holds a value for them
  (``PAIR_COLUMNS``: DiG's subset, K = ``n_changes`` and change kinds, MED's edit category, the
  change extent of edited photos, ...; change kinds are comma-joined and counted one by one), and
  objects per scene for rendered pairs (DiG supp. §7: 3-10);
* samples per task and split, and samples per category for every (task, split) that has one
  (comma-joined categories, as dig-render's change kinds, counted one by one):
  MED's bench items per type (split ``bench``, §3.3: 15 per type) and its SFT samples per type
  (``med-diff-qa``, the other splits);
* the length in words of every caption answer (``diff-caption``, ``med-diff-qa``; OmniDiff §7.2,
  Fig. 5) and its most frequent words, function words left out (§7.1, Fig. 4: "left", "right" and
  "side" lead OmniDiff's);
* the funnel of the runs that wrote the dataset's pairs, stage by stage with every drop reason,
  summed over those runs from ``stage_stats`` (MED's filter, edit, alignment, judge stages, ...).

All of it is grouped by what the rows hold, not by a list of known stages or categories, so a new
stage, category or column value shows up without a change here; only a new categorical *column*
is added to ``PAIR_COLUMNS``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pairsmith.storage.dropped_rows import sum_stage_rows
from pairsmith.storage.verdict import StageStats

# Categorical pairs columns counted per value over kept pairs (column -> label in the report).
PAIR_COLUMNS: dict[str, str] = {
    "subset": "subset",
    "n_changes": "differences per pair (K)",
    "edit_category": "change kind / edit category",
    "change_extent": "change extent",
}
SPLIT_ON_COMMA = frozenset({"edit_category"})  # dig-render comma-joins a pair's change kinds
CAPTION_TASKS = ("diff-caption", "med-diff-qa")
TOP_WORDS = 20
PLOT_COLUMNS = 4  # panels per row of the plot
LENGTH_BINS = (0, 5, 10, 15, 20, 30, 40, 60, 80, 120)  # caption length histogram edges, words (last bin open)
# English function words left out of the word counts (pairsmith's list; OmniDiff's Fig. 4 shows content words).
STOPWORDS = frozenset("""
a an the and or but of in on at to from by with without for into onto over under than then that this these those
is are was were be been being has have had it its it's there their they them he she his her we our you your i
as not no so if while which who whom what when where why how also both each other same one two three now
does do did can could would should will may might just only very more most much many some any all
""".split())
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")

PAIR_READ = ("pair_id", "run_id", "method", "dataset", "status", "scene_before", *PAIR_COLUMNS)
SAMPLE_READ = ("pair_id", "run_id", "method", "dataset", "task", "split", "category", "answer")


@dataclass
class DatasetStats:
    """The figures of one dataset (see the module docstring)."""

    name: str
    pairs_kept: int = 0
    pairs_dropped: int = 0
    pairs_by: dict[str, Counter] = field(default_factory=dict)  # PAIR_COLUMNS column -> value -> kept pairs
    objects_per_scene: Counter = field(default_factory=Counter)  # objects in the before scene -> kept pairs
    samples: Counter = field(default_factory=Counter)  # (task, split) -> samples
    categories: dict[tuple[str, str], Counter] = field(default_factory=dict)  # (task, split) -> category -> samples
    caption_lengths: list[int] = field(default_factory=list)  # words per caption answer
    words: Counter = field(default_factory=Counter)  # content word -> occurrences in caption answers
    runs: list[str] = field(default_factory=list)
    funnel: list[StageStats] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.name, "pairs_kept": self.pairs_kept, "pairs_dropped": self.pairs_dropped,
            "pairs_by": {c: dict(sorted(v.items(), key=lambda kv: str(kv[0]))) for c, v in self.pairs_by.items()},
            "objects_per_scene": dict(sorted(self.objects_per_scene.items())),
            "samples": {f"{t}/{s}": n for (t, s), n in sorted(self.samples.items())},
            "categories": {f"{t}/{s}": dict(sorted(c.items())) for (t, s), c in sorted(self.categories.items())},
            "caption_length_histogram": length_histogram(self.caption_lengths),
            "caption_length_mean": round(sum(self.caption_lengths) / len(self.caption_lengths), 2)
            if self.caption_lengths else None,
            "top_words": self.words.most_common(TOP_WORDS),
            "runs": self.runs,
            "funnel": [{"stage": s.stage, "in": s.n_in, "kept": s.n_kept, "dropped": s.n_dropped,
                        "reasons": dict(s.reasons.most_common())} for s in self.funnel],
        }


def dataset_of(row: dict[str, Any]) -> str:
    return row.get("dataset") or row.get("method") or "?"


def caption_words(text: str) -> list[str]:
    """The words of a caption, lower case (for its length)."""
    return _WORD.findall((text or "").lower())


def length_histogram(lengths: list[int]) -> dict[str, int]:
    """Counts per ``LENGTH_BINS`` bin, keyed ``"lo-hi"`` (words, hi exclusive) and ``"lo+"`` for the last."""
    out: dict[str, int] = {}
    edges = LENGTH_BINS
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else None
        key = f"{lo}-{hi}" if hi is not None else f"{lo}+"
        out[key] = sum(1 for n in lengths if n >= lo and (hi is None or n < hi))
    return out


def _objects(scene: str | None) -> int | None:
    if not scene:
        return None
    try:
        return len(json.loads(scene).get("objects", []))
    except (ValueError, AttributeError):
        return None


def _columns(store, table: str, wanted: tuple[str, ...]) -> list[str]:
    ds = store.dataset(table)
    if ds is None:
        return []
    present = set(ds.schema.names)
    return [c for c in wanted if c in present]


def dataset_stats(store, run_ids: set[str] | None = None) -> list[DatasetStats]:
    """Every dataset of ``store`` (a ``PairStore``), by name. ``run_ids``: only the samples those runs
    wrote and the pairs those runs wrote or their samples are made from (the HF card's figures: the
    runs an export reads); None: everything."""
    found: dict[str, DatasetStats] = {}

    def get(name: str) -> DatasetStats:
        return found.setdefault(name, DatasetStats(name))

    sample_columns = _columns(store, "samples", SAMPLE_READ)
    sampled_pairs: set[str] = set()
    if run_ids is not None and {"pair_id", "run_id"} <= set(sample_columns):
        for batch in store.scan("samples", columns=["pair_id", "run_id"]):
            sampled_pairs.update(r["pair_id"] for r in batch if r["run_id"] in run_ids)
    runs_of: dict[str, set[str]] = {}
    columns = _columns(store, "pairs", PAIR_READ)
    for batch in store.scan("pairs", columns=columns) if columns else ():
        for row in batch:
            if run_ids is not None and row["run_id"] not in run_ids and row["pair_id"] not in sampled_pairs:
                continue
            stats = get(dataset_of(row))
            runs_of.setdefault(stats.name, set()).add(row["run_id"])
            if row.get("status") != "kept":
                stats.pairs_dropped += 1
                continue
            stats.pairs_kept += 1
            for column in PAIR_COLUMNS:
                value = row.get(column)
                if value is None or value == "":
                    continue
                values = [v.strip() for v in str(value).split(",") if v.strip()] if column in SPLIT_ON_COMMA else [value]
                stats.pairs_by.setdefault(column, Counter()).update(values)
            n_objects = _objects(row.get("scene_before"))
            if n_objects is not None:
                stats.objects_per_scene[n_objects] += 1
    for batch in store.scan("samples", columns=sample_columns) if sample_columns else ():
        for row in batch:
            if run_ids is not None and row.get("run_id") not in run_ids:
                continue
            stats = get(dataset_of(row))
            key = (row["task"], row["split"])
            stats.samples[key] += 1
            if row.get("category"):  # dig-render's are its comma-joined change kinds: counted one by one
                kinds = [c.strip() for c in str(row["category"]).split(",") if c.strip()]
                stats.categories.setdefault(key, Counter()).update(kinds)
            if row["task"] in CAPTION_TASKS:
                words = caption_words(row.get("answer") or "")
                stats.caption_lengths.append(len(words))
                stats.words.update(w for w in words if w not in STOPWORDS and len(w) > 1)
    stage_rows = store.read("stage_stats").to_pylist() if "stage_stats" in store.table_names() else []
    for name, run_ids in runs_of.items():
        found[name].runs = sorted(run_ids)
        found[name].funnel = sum_stage_rows([r for r in stage_rows if r["run_id"] in run_ids])
    return [found[n] for n in sorted(found)]


def format_dataset_stats(datasets: list[DatasetStats]) -> str:
    """The report ``pairsmith stats --dataset`` prints."""
    if not datasets:
        return "no pairs or samples stored"
    lines: list[str] = []
    for d in datasets:
        lines.append(f"dataset {d.name}: {d.pairs_kept} pairs kept, {d.pairs_dropped} dropped "
                     f"({len(d.runs)} run{'s' if len(d.runs) != 1 else ''})")
        for column, counts in d.pairs_by.items():
            lines.append(f"  pairs by {PAIR_COLUMNS[column]}: " + _counts(counts))
        if d.objects_per_scene:
            lines.append("  pairs by objects per scene: " + _counts(d.objects_per_scene))
        if d.samples:
            lines.append("  samples (task/split): " + ", ".join(f"{t}/{s} {n}" for (t, s), n in sorted(d.samples.items())))
        for (task, split), counts in sorted(d.categories.items()):
            lines.append(f"  {task}/{split} by category: " + _counts(counts))
        if d.caption_lengths:
            mean = sum(d.caption_lengths) / len(d.caption_lengths)
            hist = ", ".join(f"{k} {v}" for k, v in length_histogram(d.caption_lengths).items() if v)
            lines.append(f"  caption length (words): mean {mean:.1f}, min {min(d.caption_lengths)}, "
                         f"max {max(d.caption_lengths)}; {hist}")
            lines.append("  most frequent words: " + ", ".join(f"{w} {n}" for w, n in d.words.most_common(TOP_WORDS)))
        if d.funnel:
            lines.append("  funnel (stage: in -> kept, reasons):")
            for s in d.funnel:
                reasons = ", ".join(f"{r} {n}" for r, n in s.reasons.most_common()) or "-"
                lines.append(f"    {s.stage}: {s.n_in} -> {s.n_kept}; {reasons}")
    return "\n".join(lines)


def _counts(counts: Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (str(type(kv[0])), kv[0])))


def plot_dataset_stats(datasets: list[DatasetStats], path: str) -> None:
    """Bar charts, ``PLOT_COLUMNS`` a row, each titled with its dataset: samples per task/split, each pair
    count, samples per category, caption lengths (OmniDiff Fig. 5), the most frequent words (Fig. 4, as
    bars) and the funnel's kept counts; written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[list[tuple[str, list[str], list[float]]]] = []
    for d in datasets:
        row = []
        if d.samples:
            keys = sorted(d.samples)
            row.append(("samples (task/split)", [f"{t}/{s}" for t, s in keys], [d.samples[k] for k in keys]))
        for column, counts in d.pairs_by.items():
            keys = sorted(counts, key=lambda k: (str(type(k)), k))
            row.append((f"pairs by {PAIR_COLUMNS[column]}", [str(k) for k in keys], [counts[k] for k in keys]))
        if d.objects_per_scene:
            keys = sorted(d.objects_per_scene)
            row.append(("pairs by objects per scene", [str(k) for k in keys], [d.objects_per_scene[k] for k in keys]))
        for (task, split), counts in sorted(d.categories.items()):
            keys = sorted(counts)
            row.append((f"{task}/{split} by category", keys, [counts[k] for k in keys]))
        if d.caption_lengths:
            hist = length_histogram(d.caption_lengths)
            row.append(("caption length (words)", list(hist), list(hist.values())))
            top = d.words.most_common(TOP_WORDS)
            row.append(("most frequent words", [w for w, _ in top], [n for _, n in top]))
        if d.funnel:
            row.append(("funnel: kept after each stage", [s.stage for s in d.funnel], [s.n_kept for s in d.funnel]))
        panels.append(row or [("no rows", [], [])])
    flat = [(d.name, panel) for d, row in zip(datasets, panels) for panel in row] or [("", ("no rows", [], []))]
    n_cols = min(PLOT_COLUMNS, len(flat))
    n_rows = -(-len(flat) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.4 * n_rows), squeeze=False)
    for k, ax in enumerate(ax for row in axes for ax in row):
        if k >= len(flat):
            ax.axis("off")
            continue
        name, (title, labels, values) = flat[k]
        ax.bar(range(len(values)), values, color="#4C72B0")
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{name}: {title}", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
