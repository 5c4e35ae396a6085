"""One batch of an import: entries in, pair rows (kept or dropped) and samples out.

Three stages, counted per entry: ``read`` (the entry fits the published format), ``image_load`` (both
images are inside the dataset's folders, present and sound) and ``import_samples`` (the kept pair gave its
samples). Only this batch's images are in memory at once.

Images are decoded as a viewer shows them (``pairsmith.storage.image_decode``: upright, 8-bit,
alpha over white, one frame), and a pair whose two images then show the same picture is a
``load_no_visible_change`` row: its captions state a change the stored images do not show (pairs of
a no-change subset, e.g. CLEVR-Change's distractors, are exempt).
"""

from __future__ import annotations

from pairsmith.storage.image_decode import same_pixels
from pairsmith.storage.image_folder import open_image_in, stored_pair
from pairsmith.storage.schemas import PairRow, SampleRow
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.tasks.imports.base import BadEntry, Entry, ImportConfig, Importer, PairImages, load_reason
from pairsmith.tasks.stage import stage

NO_VISIBLE_CHANGE = "load_no_visible_change"


@stage("read", "image_load", "import_samples")
def load_entries(
    read: StageStats, load: StageStats, sampled: StageStats,
    importer: Importer, config: ImportConfig, entries: list[Entry | BadEntry], run_id: str,
) -> tuple[list[PairRow], list[SampleRow]]:
    pairs: list[PairRow] = []
    samples: list[SampleRow] = []
    roots = importer.image_roots(config)
    for entry in entries:
        if isinstance(entry, BadEntry):
            read.record(Verdict.drop(entry.reason))
            pairs.append(importer.bad_entry_row(config, run_id, entry))
            continue
        read.record(KEEP)
        pair_id = importer.pair_id(config, entry)
        loaded, problem = [], None
        for name in (entry.before, entry.after):
            verdict, detail, facts = open_image_in(roots, name, config.image_limits)
            if not verdict.keep:
                problem = load_reason(verdict.reason or "source_unreadable"), f"{name}: {detail}"
                break
            loaded.append(facts)
        if problem:
            load.record(Verdict.drop(problem[0]))
            pairs.append(importer.dropped_row(config, run_id, pair_id, entry.origin, "image_load", *problem,
                                              category=entry.category))
            continue
        before, after = loaded
        if entry.subset is None and same_pixels(before["image"], after["image"]):
            # decoded as a viewer shows them, the two images are one picture: the caption's change is not there
            load.record(Verdict.drop(NO_VISIBLE_CHANGE))
            pairs.append(importer.dropped_row(
                config, run_id, pair_id, entry.origin, "image_load", NO_VISIBLE_CHANGE,
                f"{entry.before} and {entry.after} decode to the same {before['width']}x{before['height']} picture",
                category=entry.category))
            continue
        load.record(KEEP)
        stored_before, stored_after, stored_format = stored_pair(before["data"], after["data"])
        source_format = before["format"] if before["format"] == after["format"] else f"{before['format']}/{after['format']}"
        images = PairImages(stored_before, stored_after, before["width"], before["height"], stored_format, source_format)
        rows = importer.samples(config, entry, pair_id, run_id)
        if not rows:  # an importer gives every entry it reads at least one sample; never keep a pair without
            sampled.record(Verdict.drop("samples_none"))
            pairs.append(importer.dropped_row(config, run_id, pair_id, entry.origin, "import_samples", "samples_none",
                                              "the entry gave no sample", category=entry.category))
            continue
        sampled.record(KEEP)
        pairs.append(importer.kept_row(config, run_id, pair_id, entry, images))
        samples += rows
    return pairs, samples

