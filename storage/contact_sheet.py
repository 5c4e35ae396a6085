"""A contact sheet: pairs of a run side by side with their boxes, to look at what was made or thrown away.

Each cell is before | black bar | after, the kept boxes drawn in red (dropped boxes in yellow) on
the before image, with each box's ``confidence`` written at its corner where a proposer gave one, and
on the after image too when both share a frame (a real edit that came back at another size is shown
resized, unboxed). A pair judged a whole-image edit (``change_extent = global``) gets an orange frame.
Below it, in a proportional font: the difference captions (each distinct caption once: a ``move``'s
two regions share one), the pair's question where a sample asks one (MED), the whole-image verdict,
or, for a dropped pair, its stage, reason and ``drop_detail``.

Which pairs (``pick_pairs``): the run's own pairs (``pairs.run_id``), or, for a run that annotates
other runs' pairs (``propose-regions``), the pairs it judged (``pairs.verdict_run_id``); ``status``
``kept`` (default), ``dropped`` (optionally of some stages / reasons: what a filter throws away,
from ``storage/dropped_rows.py``) or ``all``. Which boxes: those of ``regions_run`` when given, else
the run's own regions, else every run's regions of the pair.

It reads what it draws and no more: ids and verdicts without image bytes, then the images of the
``n`` pairs it picks by key (``PairStore.take``), so its cost does not grow with the database.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from pairsmith.storage.dropped_rows import dropped_rows, has_column
from pairsmith.storage.pair_images import IMAGE, draw_boxes, open_image, side_by_side
from pairsmith.storage.store import PairStore, sql_in, sql_literal

COLUMNS = 2
MARGIN = 10
TEXT_LINES = 5
FONT_PX = 13
LINE_PX = 16
MAX_SIDE = 480
STATUSES = ("kept", "dropped", "all")
GLOBAL_FRAME = (255, 140, 0)


def _line(scale: float) -> int:
    return max(2, round(2 / scale))


def _font(size: int = FONT_PX):
    """Pillow's bundled proportional font (FreeType), readable word spacing; the bitmap font without FreeType."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _owned(store: PairStore, run_id: str) -> bool:
    return store.count("pairs", f"run_id = {sql_literal(run_id)}") > 0


def _judged(store: PairStore, run_id: str) -> list[str]:
    if not has_column(store, "pairs", "verdict_run_id"):
        return []
    rows = store.read("pairs", where=f"verdict_run_id = {sql_literal(run_id)}", columns=["pair_id"])
    return sorted(rows.column("pair_id").to_pylist())


def pick_pairs(store: PairStore, run_id: str, status: str = "kept", stages: tuple[str, ...] = (),
               reasons: tuple[str, ...] = ()) -> list[str]:
    """The pair ids a sheet of ``run_id`` draws, in order (kept by id first, then dropped by stage and reason)."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r}: use {', '.join(STATUSES)}")
    dropped: list[str] = []
    if status != "kept" or stages or reasons:
        for row in dropped_rows(store, run_id, stages, reasons):
            if row.kind == "pair" and row.pair_id not in dropped:
                dropped.append(row.pair_id)
    if status == "dropped":
        return dropped
    if _owned(store, run_id):
        kept = sorted(store.read("pairs", where=f"run_id = {sql_literal(run_id)} AND status = 'kept'",
                                 columns=["pair_id"]).column("pair_id").to_pylist())
    else:
        not_kept = {r.pair_id for r in dropped_rows(store, run_id) if r.kind == "pair"}
        kept = [p for p in _judged(store, run_id) if p not in not_kept]
    return kept + ([p for p in dropped if p not in kept] if status == "all" else [])


def newest_drawable_run(store: PairStore) -> str | None:
    """The newest run that has pairs to draw (its own, or pairs it judged), or None."""
    for run in store.runs():
        if _owned(store, run["run_id"]) or _judged(store, run["run_id"]):
            return run["run_id"]
    return None


def draw_contact_sheet(store: PairStore, out: Path, n: int, run_id: str, include_dropped: bool = False,
                       status: str | None = None, stages: tuple[str, ...] = (), reasons: tuple[str, ...] = (),
                       regions_run: str | None = None) -> int:
    """Draw up to ``n`` pairs of ``run_id`` into a PNG; returns how many were drawn. ``status`` defaults to
    ``dropped`` when ``stages`` / ``reasons`` are given, ``all`` with ``include_dropped``, else ``kept``.
    Raises ValueError (one line) when no pair with images matches."""
    status = status or ("dropped" if stages or reasons else "all" if include_dropped else "kept")
    order = pick_pairs(store, run_id, status, stages, reasons)
    verdicts = {r.pair_id: r for r in dropped_rows(store, run_id) if r.kind == "pair"}
    pairs: list[dict] = []
    columns = ["image_before", "image_after", "status", "drop_reason", "drop_stage", "drop_detail", "difference"]
    columns += [c for c in ("change_extent", "change_extent_reason", "change_extent_score") if has_column(store, "pairs", c)]
    for start in range(0, len(order), n):  # pairs dropped before rendering have no images: read on until n
        wanted = order[start:start + n]
        found = {r["pair_id"]: r for chunk in store.take("pairs", wanted, columns) for r in chunk}
        pairs += [found[p] for p in wanted if p in found and found[p]["image_before"] and found[p]["image_after"]]
        if len(pairs) >= n:
            break
    pairs = pairs[:n]
    if not pairs:
        what = {"kept": "kept ", "dropped": "dropped ", "all": ""}[status]
        raise ValueError(f"run {run_id!r} has no {what}pairs with images to draw"
                         + (f" (stage {', '.join(stages)})" if stages else "")
                         + (f" (reason {', '.join(reasons)})" if reasons else ""))
    ids = [p["pair_id"] for p in pairs]
    regions = _regions(store, ids, regions_run or run_id, explicit=regions_run is not None)
    questions = _questions(store, ids)
    cells = [_cell(p, [r for r in regions if r["pair_id"] == p["pair_id"]], questions.get(p["pair_id"]),
                   verdicts.get(p["pair_id"])) for p in pairs]
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


def _regions(store: PairStore, ids: list[str], run_id: str, explicit: bool) -> list[dict]:
    columns = ["pair_id", "run_id", "box", "status", "difference_caption", "confidence"]
    rows = store.read("regions", where=sql_in("pair_id", ids), columns=columns).to_pylist()
    own = [r for r in rows if r["run_id"] == run_id]
    if explicit or own:
        return own
    return rows


def _questions(store: PairStore, ids: list[str]) -> dict[str, str]:
    """The question a sample asks about each pair (MED's multiple choice, a QA), placeholders removed."""
    rows = store.read("samples", where=sql_in("pair_id", ids) + " AND " + sql_in("task", ["med-mcq", "med-diff-qa"]),
                      columns=["pair_id", "conversation"]).to_pylist()
    out: dict[str, str] = {}
    for r in rows:
        users = [m["content"] for m in r["conversation"] if m["role"] == "user"]
        if users and r["pair_id"] not in out:
            out[r["pair_id"]] = " ".join(users[0].replace(IMAGE, " ").split())
    return out


def caption_text(regions: list[dict]) -> str:
    """The kept regions' difference captions, each distinct one once, in region order."""
    seen: dict[str, None] = {}
    for r in regions:
        if r["status"] == "kept" and r.get("difference_caption"):
            seen.setdefault(r["difference_caption"].strip(), None)
    return " ".join(seen)


def cell_text(pair: dict, regions: list[dict], question: str | None, verdict=None) -> list[str]:
    """The paragraphs under a cell: what changed (or why the pair was dropped), the verdict, the question."""
    parts = []
    if pair["status"] != "kept" or verdict is not None:
        stage = verdict.stage if verdict is not None else pair.get("drop_stage")
        reason = verdict.reason if verdict is not None else pair.get("drop_reason")
        detail = verdict.detail if verdict is not None else pair.get("drop_detail")
        parts.append(f"dropped at {stage or '?'}: {reason}" + (f" ({' '.join(detail.split())})" if detail else ""))
    elif pair.get("change_extent") == "global":
        score = pair.get("change_extent_score")
        parts.append(f"whole image changed ({pair.get('change_extent_reason') or 'global'}"
                     + (f", score {score:.2f}" if score is not None else "") + ")")
    else:
        confidences = [r.get("confidence") for r in regions if r["status"] == "kept" and r.get("confidence") is not None]
        parts.append(caption_text(regions) or pair.get("difference")
                     or (f"{len(confidences)} box{'es' if len(confidences) != 1 else ''}, confidence " + ", ".join(f"{c:.2f}" for c in confidences)
                         if confidences else "(no change)" if not regions else ""))
    if question:
        parts.append(f"Q: {question}")
    return [p for p in parts if p]


def _wrap(text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if line and font.getlength(candidate) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + ([line] if line else [])


def _cell(pair: dict, regions: list[dict], question: str | None = None, verdict=None) -> Image.Image:
    before, after = open_image(pair["image_before"]), open_image(pair["image_after"])
    kept = [r for r in regions if r["status"] == "kept"]
    dropped = [r["box"] for r in regions if r["status"] != "kept"]
    same_frame = before.size == after.size
    scale = min(1.0, MAX_SIDE / max(before.size))  # real photos are large: draw them at a readable size
    before = draw_boxes(draw_boxes(before, dropped, "yellow", width=_line(scale)), [r["box"] for r in kept],
                        width=_line(scale))
    if same_frame:  # boxes are in before-image pixels: on another frame they would point elsewhere
        after = draw_boxes(draw_boxes(after, dropped, "yellow", width=_line(scale)), [r["box"] for r in kept],
                           width=_line(scale))
    else:
        after = after.resize(before.size)
    if scale < 1.0:
        size = (round(before.width * scale), round(before.height * scale))
        before, after = before.resize(size), after.resize(size)
    font = _font()
    draw = ImageDraw.Draw(before)
    for r in kept:  # each box's confidence at its top-left corner, where the proposer gave one
        if r.get("confidence") is not None:
            x, y = r["box"][0] * scale + 3, r["box"][1] * scale + 2
            draw.text((x, y), f"{r['confidence']:.2f}", fill="red", font=_font(11), stroke_width=2, stroke_fill="white")
    if pair.get("change_extent") == "global":
        ImageDraw.Draw(before).rectangle([0, 0, before.width - 1, before.height - 1], outline=GLOBAL_FRAME, width=6)
    pair_img = side_by_side(before, after)
    lines: list[str] = []
    for paragraph in cell_text(pair, regions, question, verdict):
        lines += _wrap(paragraph, font, pair_img.width - 4)
    if len(lines) > TEXT_LINES:
        lines = lines[:TEXT_LINES - 1] + [lines[TEXT_LINES - 1] + " …"]
    cell = Image.new("RGB", (pair_img.width, pair_img.height + TEXT_LINES * LINE_PX + 4), "white")
    cell.paste(pair_img, (0, 0))
    draw = ImageDraw.Draw(cell)
    for k, line in enumerate(lines):
        draw.text((2, pair_img.height + 2 + k * LINE_PX), line, fill="black", font=font)
    return cell
