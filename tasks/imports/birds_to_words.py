"""Birds-to-Words: pairs of iNaturalist bird photographs with paragraph-long comparisons.

Forbes, Käser-Chen, Sharma and Belongie, "Neural Naturalist: Generating Fine-Grained Image
Comparisons", EMNLP 2019; public repository google-research-datasets/birds-to-words (layout read
from its README, "Data Format"). One of the public sets of OmniDiff's training mix (OmniDiff supp.
Table 9: 3k pairs, 14k captions). The repository publishes ``birds-to-words-v1.0.tsv`` (``--tsv``):
tab-separated, a header line naming the eleven columns, then one line per annotation (a file
without the header line is read in the README's column order):

``img1ObservationURL img1ImgURL img1Species img1Selection img2ObservationURL img2ImgURL
img2Species img2Selection split annN description``

``img1`` is the left photo of the pair, ``img2`` the right one; ``split`` is train, val or test;
``annN`` (1-5) numbers the up to five annotators' descriptions of the same pair; ``description``
is one annotator's paragraph. The photos themselves are not in the repository: they are
``img1ImgURL`` / ``img2ImgURL`` on iNaturalist, downloaded by the user (pairsmith downloads
nothing). They are looked up in ``--images`` by iNaturalist photo id, the number after
``/photos/`` in the URL, as ``<id>.jpg`` (or ``.jpeg`` / ``.png``, whichever is there), as a public download script of the
set names them (it fetches ``photos/<id>/large.<ext>`` to ``images/<id>.<ext>``).

The lines of one photo pair (the same two photo ids) are one pair (origin
``birds-to-words:<file>#<first line>``, left photo as ``before``), each non-blank description one
``diff-caption`` sample in annotator order (``annN``), in the pair's split. A line that does not
fit (wrong number of fields, a split other than train / val / test, an ``annN`` that is not a
number, a URL without a photo id) is a reason row naming its line; a pair whose lines give two
splits, or that has no non-blank description, is a reason row naming its first line. A header
without the columns read is one line naming the file and the missing columns (exit 2).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from pairsmith.storage.input_files import read_text_file, text_lines
from pairsmith.tasks.imports.base import BAD_ENTRY, BadEntry, Entry, ImportConfig, Importer

COLUMNS = ("img1ObservationURL", "img1ImgURL", "img1Species", "img1Selection", "img2ObservationURL", "img2ImgURL",
           "img2Species", "img2Selection", "split", "annN", "description")  # the README's "Data Format"
READ = ("img1ImgURL", "img2ImgURL", "split", "annN", "description")
SPLITS = ("train", "val", "test")
PHOTO_ID = re.compile(r"/photos/(\d+)(?:/|$)")
EXTENSIONS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


class BirdsToWordsConfig(ImportConfig):
    importer: ClassVar[str] = "birds-to-words"

    tsv: str = Field(description="the published birds-to-words-v1.0.tsv (header line and one line per annotation)")
    images_dir: str = Field(description="folder of the downloaded photos, named by iNaturalist photo id: <id>.jpg "
                            "(or .jpeg / .png)", json_schema_extra={"option": "images"})


class BirdsToWordsImporter(Importer[BirdsToWordsConfig]):
    name = "birds-to-words"
    method = "birds-to-words"
    config_class = BirdsToWordsConfig
    folder_options = ("images_dir",)

    def input_files(self, config: BirdsToWordsConfig) -> list[Path]:
        return [Path(config.tsv)]

    def image_roots(self, config: BirdsToWordsConfig) -> list[Path]:
        return [Path(config.images_dir)]

    def read(self, config: BirdsToWordsConfig) -> list[Entry | BadEntry]:
        path = Path(config.tsv)
        lines = text_lines(read_text_file(path, "--tsv"))
        if not lines:
            raise ValueError(f"--tsv {str(path)!r}: empty (the published file starts with a header line: "
                             f"{' '.join(COLUMNS)})")
        header = [h.strip() for h in lines[0].split("\t")]
        start = 2  # the line number of the first annotation
        if len(header) == len(COLUMNS) and header[COLUMNS.index("split")] in SPLITS:
            header, start = list(COLUMNS), 1  # no header line: the README's column order
        missing = [c for c in READ if c not in header]
        if missing:
            raise ValueError(f"--tsv {str(path)!r} line 1: no column {', '.join(missing)} in the header (the published "
                             f"header is {' '.join(COLUMNS)}, tab-separated)")
        col = {name: header.index(name) for name in READ}
        folder = Path(config.images_dir)
        present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
        source = path.name
        out: list[Entry | BadEntry] = []
        groups: dict[tuple[str, str], list[tuple[int, str, int, str]]] = {}  # (id1, id2) -> (line, split, annN, text)
        for number, line in enumerate(lines[start - 1:], start=start):
            if not line.strip():
                continue
            origin = f"birds-to-words:{source}#{number}"

            def bad(detail: str, number=number, origin=origin) -> BadEntry:
                return BadEntry(number, source, BAD_ENTRY, f"{source} line {number}: {detail}", origin)

            fields = line.split("\t")
            if len(fields) != len(header):
                out.append(bad(f"{len(fields)} tab-separated fields, the header has {len(header)}"))
                continue
            value = {name: fields[i].strip() for name, i in col.items()}
            ids = [PHOTO_ID.search(value[c]) for c in ("img1ImgURL", "img2ImgURL")]
            if not all(ids):
                which = " and ".join(c for c, m in zip(("img1ImgURL", "img2ImgURL"), ids) if not m)
                out.append(bad(f"{which}: no iNaturalist photo id (…/photos/<id>/…) in the URL"))
                continue
            if value["split"] not in SPLITS:
                out.append(bad(f"split {value['split']!r} is not train, val or test"))
                continue
            if not value["annN"].isdigit():
                out.append(bad(f"annN {value['annN']!r} is not a number"))
                continue
            key = (ids[0].group(1), ids[1].group(1))
            groups.setdefault(key, []).append((number, value["split"], int(value["annN"]), fields[col["description"]]))
        for (id1, id2), rows in groups.items():
            first = rows[0][0]
            origin = f"birds-to-words:{source}#{first}"
            splits = sorted({r[1] for r in rows})
            if len(splits) > 1:
                out.append(BadEntry(first, source, BAD_ENTRY, f"{source} line {first}: photos {id1} and {id2} are in "
                                    f"{' and '.join(splits)} (lines {', '.join(str(r[0]) for r in rows)})", origin))
                continue
            captions = tuple(r[3] for r in sorted(rows, key=lambda r: (r[2], r[0])) if r[3].strip())
            if not captions:
                out.append(BadEntry(first, source, BAD_ENTRY, f"{source} line {first}: photos {id1} and {id2} have no "
                                    "non-blank description", origin))
                continue
            out.append(Entry(index=first, key=("photos", id1, id2, *captions), before=_photo(id1, present),
                             after=_photo(id2, present), origin=origin, captions=captions, split=splits[0]))
        return sorted(out, key=lambda e: e.index)


def _photo(photo_id: str, present: set[str]) -> str:
    """The file of a photo in the images folder: the first extension there, else ``<id>.jpg`` (then
    the import reports it missing)."""
    return next((photo_id + ext for ext in EXTENSIONS if photo_id + ext in present), photo_id + ".jpg")
