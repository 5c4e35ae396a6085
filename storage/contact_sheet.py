"""A contact sheet: pairs of a run side by side with their boxes, to look at what was made.

Each cell is before | black bar | after, the kept boxes drawn in red (dropped boxes in yellow) on
the before image, and on the after image too when both share a frame (a real edit that came back
at another size is shown resized, unboxed). Below it: the difference captions or the drop reason.

It reads what it draws and no more: the run's pair ids and verdicts without image bytes (a filter
on an image column would read every image of the table), then the images of the ``n`` pairs it
picks by key (``PairStore.take``), so its cost does not grow with the database.
"""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from pairsmith.storage.pair_images import draw_boxes, open_image, side_by_side
from pairsmith.storage.store import PairStore, sql_in, sql_literal

COLUMNS = 2
MARGIN = 10
TEXT_LINES = 3
LINE_PX = 14
MAX_SIDE = 480


def _line(scale: float) -> int:
    return max(2, round(2 / scale))


def draw_contact_sheet(store: PairStore, out: Path, n: int, run_id: str, include_dropped: bool = False) -> int:
    """Draw up to ``n`` pairs of ``run_id`` (kept first, by id) into a PNG; returns how many were drawn."""
    where = f"run_id = {sql_literal(run_id)}" + ("" if include_dropped else " AND status = 'kept'")
    listing = store.read("pairs", where=where, columns=["pair_id", "status"]).to_pylist()
    order = [p["pair_id"] for p in sorted(listing, key=lambda p: (p["status"] != "kept", p["pair_id"]))]
    pairs: list[dict] = []
    columns = ["image_before", "image_after", "status", "drop_reason", "difference"]
    for start in range(0, len(order), n):  # pairs dropped before rendering have no images: read on until n
        wanted = order[start:start + n]
        found = {r["pair_id"]: r for chunk in store.take("pairs", wanted, columns) for r in chunk}
        pairs += [found[p] for p in wanted if p in found and found[p]["image_before"] and found[p]["image_after"]]
        if len(pairs) >= n:
            break
    pairs = pairs[:n]
    if not pairs:
        raise ValueError(f"run {run_id!r} has no {'' if include_dropped else 'kept '}pairs with images to draw "
                         "(a run that only adds regions owns no pairs: pass the --run that made them)")
    regions = store.read(
        "regions", where=sql_in("pair_id", [p["pair_id"] for p in pairs]),
        columns=["pair_id", "box", "status", "difference_caption"],
    ).to_pylist()
    cells = [_cell(p, [r for r in regions if r["pair_id"] == p["pair_id"]]) for p in pairs]
    cell_w = max(c.width for c in cells)
    cell_h = max(c.height for c in cells)
    rows = (len(cells) + COLUMNS - 1) // COLUMNS
    sheet = Image.new("RGB", (COLUMNS * (cell_w + MARGIN) + MARGIN, rows * (cell_h + MARGIN) + MARGIN), "white")
    for i, cell in enumerate(cells):
        r, c = divmod(i, COLUMNS)
        sheet.paste(cell, (MARGIN + c * (cell_w + MARGIN), MARGIN + r * (cell_h + MARGIN)))
    out = check_sheet_out(out, store.uri)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text(SHEET_MARK[0], SHEET_MARK[1])
    from pairsmith.storage.exports.base import sweep_leftovers
    from pairsmith.storage.process_owner import host_name

    sweep_leftovers(out.parent)  # what a sheet killed mid-write left
    partial = out.with_name(f".{out.name}.partial-{host_name()}.{os.getpid()}.{int(time.time())}.png")
    try:
        sheet.save(partial, format="PNG", pnginfo=info)
        os.replace(partial, out)  # a kill mid-write never leaves half a sheet under --out
    finally:
        partial.unlink(missing_ok=True)
    return len(cells)


SHEET_MARK = ("Software", "pairsmith contact-sheet")
"""The PNG text chunk every contact sheet carries: only such a file is ever replaced by a new sheet."""


def check_sheet_out(out: Path, db_uri: str | None = None) -> Path:
    """The absolute ``--out`` of a contact sheet, after refusing (ValueError, one line) a path inside the
    database, a folder, a link, or an existing file that is not a contact sheet pairsmith drew."""
    from pairsmith.storage.exports.base import _local_db, export_path

    out = export_path(out)
    db = _local_db(db_uri)
    if db is not None and out.resolve().is_relative_to(db):
        raise ValueError(f"--out {str(out)!r} is inside the database {str(db)!r}; choose a file outside it")
    if out.is_symlink() or out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a {'link' if out.is_symlink() else 'folder'}; give a new .png file")
    if out.exists():
        try:
            with Image.open(out) as img:
                mine = img.format == "PNG" and img.info.get(SHEET_MARK[0]) == SHEET_MARK[1]
        except Exception:
            mine = False
        if not mine:
            raise ValueError(f"--out {str(out)!r} exists and is not a contact sheet pairsmith drew; "
                             "choose a new file (pairsmith replaces only its own sheets)")
    return out


def _cell(pair: dict, regions: list[dict]) -> Image.Image:
    before, after = open_image(pair["image_before"]), open_image(pair["image_after"])
    kept = [r["box"] for r in regions if r["status"] == "kept"]
    dropped = [r["box"] for r in regions if r["status"] != "kept"]
    same_frame = before.size == after.size
    scale = min(1.0, MAX_SIDE / max(before.size))  # real photos are large: draw them at a readable size
    before = draw_boxes(draw_boxes(before, dropped, "yellow", width=_line(scale)), kept, width=_line(scale))
    if same_frame:  # boxes are in before-image pixels: on another frame they would point elsewhere
        after = draw_boxes(draw_boxes(after, dropped, "yellow", width=_line(scale)), kept, width=_line(scale))
    else:
        after = after.resize(before.size)
    if scale < 1.0:
        size = (round(before.width * scale), round(before.height * scale))
        before, after = before.resize(size), after.resize(size)
    pair_img = side_by_side(before, after)
    if pair["status"] == "kept":
        text = " ".join(r["difference_caption"] or "" for r in regions if r["status"] == "kept") \
        or pair.get("difference") or ("" if kept else "(no change)")
    else:
        text = f"dropped: {pair['drop_reason']}"
    font = ImageFont.load_default()
    chars = max(20, pair_img.width // 6)
    lines = textwrap.wrap(text, chars)[:TEXT_LINES]
    cell = Image.new("RGB", (pair_img.width, pair_img.height + TEXT_LINES * LINE_PX + 4), "white")
    cell.paste(pair_img, (0, 0))
    draw = ImageDraw.Draw(cell)
    for k, line in enumerate(lines):
        draw.text((2, pair_img.height + 2 + k * LINE_PX), line, fill="black", font=font)
    return cell
