"""Images as viewers see them (issue 26, kinds 1-4): one frame for pixels and boxes, decoding that
keeps the change, limits that are the ones set and shown, JSONL lines that end at "\\n" only."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from pairsmith.flows.cli.main import main
from pairsmith.storage.image_decode import ImageLimits, decode_image, limits_help
from pairsmith.storage.image_folder import ImageFolderConfig, load_captions, read_image_folder
from pairsmith.storage.pair_images import open_image, side_by_side
from pairsmith.storage.store import PairStore
from tests.models.proposers.test_change_regions import photo

ORIENTATION = 0x0112
UPRIGHT = (480, 640)  # what a viewer shows of a phone photo stored 640x480 with Orientation 6
OBJECT = [300, 380, 400, 480]  # the changed object, in the upright frame: x1, y1, x2, y2


def _save(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _phone_jpeg(upright: Image.Image, orientation: int = 6) -> bytes:
    """A JPEG whose pixels are stored sideways with the EXIF Orientation that makes viewers show
    ``upright`` (6: the viewer turns the stored 640x480 pixels 90 degrees clockwise)."""
    raw = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote: 640x480
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return _save(raw, "JPEG", quality=95, exif=exif.tobytes())


def _scene(changed: bool) -> Image.Image:
    image = photo(3, size=UPRIGHT)
    if changed:
        ImageDraw.Draw(image).rectangle([OBJECT[0], OBJECT[1], OBJECT[2] - 1, OBJECT[3] - 1], fill=(20, 40, 230))
    return image


def _changed_box(before: Image.Image, after: Image.Image) -> tuple | None:
    return ImageChops.difference(before.convert("RGB"), after.convert("RGB")).point(lambda v: 255 if v > 40 else 0).getbbox()


def _import_folder(tmp_path: Path, files: dict[str, bytes], lines: list[dict], *args: str) -> tuple[int, PairStore]:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    db = tmp_path / "db.lance"
    code = main(["import", "folder", "--pairs", str(jsonl), "--db", str(db), *args])
    return code, PairStore(str(db))


def _rows(store: PairStore) -> dict[str, dict]:
    return {p["origin"].rsplit("#", 1)[1]: p for p in store.read("pairs").to_pylist()}


# ---- kind 1: pixels and boxes in one frame ---------------------------------------------------------

def test_a_phone_jpeg_with_orientation_6_is_stored_upright_without_the_tag(tmp_path):
    files = {"b.jpg": _phone_jpeg(_scene(False)), "a.jpg": _phone_jpeg(_scene(True))}
    assert Image.open(io.BytesIO(files["b.jpg"])).size == (640, 480)  # raw frame
    code, store = _import_folder(tmp_path, files, [{"before": "b.jpg", "after": "a.jpg", "caption": "a blue box appeared", "id": "p"}])
    assert code == 0
    pair = _rows(store)["p"]
    assert pair["status"] == "kept" and (pair["width"], pair["height"]) == UPRIGHT
    for side in ("image_before", "image_after"):
        with Image.open(io.BytesIO(pair[side])) as stored:
            assert stored.size == UPRIGHT and stored.getexif().get(ORIENTATION) in (None, 1)
    box = _changed_box(open_image(pair["image_before"]), open_image(pair["image_after"]))
    assert box is not None and all(abs(a - b) <= 3 for a, b in zip(box, OBJECT))


def test_a_png_exif_orientation_and_a_med_source_are_upright_too(tmp_path):
    """Other carriers of the kind: a PNG's eXIf chunk (Orientation 8) read by the image folder, and
    a MED source photo (Orientation 6) as med-edit loads it."""
    from pairsmith.tasks.med.load_sources import load_sources
    from pairsmith.tasks.med.sources import SourceRef

    folder = tmp_path / "photos"
    folder.mkdir()
    exif = Image.Exif()
    exif[ORIENTATION] = 8  # viewers turn the stored pixels 90 degrees counter-clockwise
    (folder / "scan.png").write_bytes(_save(_scene(True).transpose(Image.Transpose.ROTATE_270), "PNG", exif=exif.tobytes()))
    (folder / "phone.jpg").write_bytes(_phone_jpeg(_scene(True)))
    scan = read_image_folder(ImageFolderConfig(path=str(folder)))
    assert not scan.drops
    unchanged = {"scan.png": _scene(False), "phone.jpg": decode_image(_phone_jpeg(_scene(False)))[2].image}
    for image in scan.images:
        assert (image.width, image.height) == UPRIGHT, image.path
        shown = open_image(image.data)
        assert shown.size == UPRIGHT and Image.open(io.BytesIO(image.data)).getexif().get(ORIENTATION) in (None, 1)
        box = _changed_box(unchanged[image.path], shown)
        assert box is not None and all(abs(a - b) <= 3 for a, b in zip(box, OBJECT)), image.path

    ref = SourceRef(source_id="phone", caption="a photo", path=str(folder / "phone.jpg"), root=str(folder))
    items, stats = load_sources.fn([ref], ["pid"], str(tmp_path / "db"), ImageLimits())
    assert items[0].alive and (items[0].width, items[0].height) == UPRIGHT
    assert Image.open(io.BytesIO(items[0].image)).size == UPRIGHT


def test_gemini_answers_are_stored_upright_and_an_unchanged_answer_is_no_sample(tmp_path):
    """MED's edited image (the third place pixels enter): an answer with EXIF Orientation 6 is stored
    upright with no tag; an answer that decodes to the source's own pixels is a reason row."""
    from types import SimpleNamespace

    from pairsmith.models.adapters.gemini_editor import EditResult
    from pairsmith.tasks.med.edit_images import RequestBudget, edit_images
    from pairsmith.tasks.med.item import MedItem
    from pairsmith.tasks.med.sources import SourceRef

    source = _phone_jpeg(_scene(False))
    upright_source = decode_image(source)[2]
    answers = {"add a blue box": EditResult(_phone_jpeg(_scene(True)), "image/jpeg", None),
               "change nothing": EditResult(_save(upright_source.image.convert("RGBA"), "PNG"), "image/png", None)}

    class Editor:
        config = SimpleNamespace(model_id="fake-editor", retry_rejected=False)

        def edit_each(self, requests):
            for k, request in enumerate(requests):
                yield k, answers[request.instruction]

    items = [MedItem(ref=SourceRef(source_id=text, caption="a photo"), pair_id=text, image=upright_source.data,
                     mime_type="image/png", width=UPRIGHT[0], height=UPRIGHT[1], edit_instruction=text)
             for text in answers]
    edit_images.fn(items, Editor(), str(tmp_path / "db.lance"), RequestBudget(10))
    added, same = items
    assert added.alive and Image.open(io.BytesIO(added.edited)).size == UPRIGHT
    assert Image.open(io.BytesIO(added.edited)).getexif().get(ORIENTATION) in (None, 1)
    box = _changed_box(upright_source.image, open_image(added.edited))
    assert box is not None and all(abs(a - b) <= 3 for a, b in zip(box, OBJECT))
    assert (same.drop_stage, same.drop_reason) == ("edit", "edit_no_visible_change")


# ---- kind 2: decoding that keeps the change -------------------------------------------------------

def _grey16(square: int) -> bytes:
    values = np.full((96, 128), 20000, np.uint16)
    values[30:60, 40:80] = square
    return _save(Image.fromarray(values), "PNG")


def test_a_16_bit_grey_pair_keeps_its_change_and_its_side_by_side_is_not_blank(tmp_path):
    files = {"b.png": _grey16(20000), "a.png": _grey16(45000)}
    assert Image.open(io.BytesIO(files["b.png"])).mode.startswith("I;16")
    code, store = _import_folder(tmp_path, files, [{"before": "b.png", "after": "a.png", "caption": "a light square appeared", "id": "p"}])
    assert code == 0
    pair = _rows(store)["p"]
    before, after = open_image(pair["image_before"]), open_image(pair["image_after"])
    assert before.getpixel((5, 5)) == (78, 78, 78)  # 20000 * 255 / 65535, not clipped to 255
    assert after.getpixel((50, 40)) == (175, 175, 175) and after.getpixel((5, 5)) == (78, 78, 78)
    assert _changed_box(before, after) == (40, 30, 80, 60)
    sheet = np.asarray(side_by_side(before, after))
    assert len(np.unique(sheet)) >= 3  # bar, background, square: not one blank picture


def test_alpha_only_changes_are_seen_over_white(tmp_path):
    """RGBA whose change is only in transparency, and a palette PNG with a transparent colour."""
    opaque = Image.new("RGBA", (96, 64), (0, 0, 0, 255))
    holed = opaque.copy()
    holed.paste((0, 0, 0, 0), (10, 20, 40, 50))  # same colour, now transparent
    palette = Image.new("P", (96, 64), 0)
    palette.putpalette([200, 0, 0, 0, 0, 255] + [0] * 762)
    palette_holed = palette.copy()
    palette_holed.paste(1, (50, 10, 70, 30))
    files = {"o.png": _save(opaque, "PNG"), "h.png": _save(holed, "PNG"),
             "p.png": _save(palette, "PNG", transparency=1), "q.png": _save(palette_holed, "PNG", transparency=1)}
    code, store = _import_folder(tmp_path, files, [
        {"before": "o.png", "after": "h.png", "caption": "a hole appeared", "id": "rgba"},
        {"before": "p.png", "after": "q.png", "caption": "a hole appeared", "id": "palette"},
    ])
    assert code == 0
    rows = _rows(store)
    for key, box in (("rgba", (10, 20, 40, 50)), ("palette", (50, 10, 70, 30))):
        pair = rows[key]
        assert pair["status"] == "kept", pair["drop_detail"]
        after = open_image(pair["image_after"])
        assert after.getpixel((box[0] + 2, box[1] + 2)) == (255, 255, 255)  # the stated background: white
        assert _changed_box(open_image(pair["image_before"]), after) == box


def _animation(fmt: str) -> bytes:
    frames = [Image.new("RGB", (64, 64), colour) for colour in ("red", "green", "blue")]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:])


def test_an_animated_gif_is_a_multiframe_row_unless_a_frame_is_picked(tmp_path):
    files = {"anim.gif": _animation("GIF"), "still.png": _save(Image.new("RGB", (64, 64), "white"), "PNG")}
    lines = [{"before": "still.png", "after": "anim.gif", "caption": "the square turned colour", "id": "p"}]
    code, store = _import_folder(tmp_path, files, lines)
    pair = _rows(store)["p"]
    assert code == 1 and (pair["status"], pair["drop_stage"], pair["drop_reason"]) == ("dropped", "image_load", "source_multiframe")
    assert "GIF with 3 frames" in pair["drop_detail"] and "--frame" in pair["drop_detail"]
    picked = tmp_path / "picked"
    picked.mkdir()
    code, store = _import_folder(picked, files, lines, "--frame", "1")
    pair = _rows(store)["p"]
    assert code == 0 and pair["status"] == "kept"
    assert open_image(pair["image_after"]).getpixel((5, 5)) == (0, 128, 0)  # frame 1: green
    assert decode_image(files["anim.gif"], ImageLimits(frame=3))[0].reason == "source_no_such_frame"


def test_apng_and_multipage_tiff_are_multiframe_and_unchanged_pictures_are_no_sample(tmp_path):
    """Other multi-frame files, in an image folder; and a pair whose files differ but decode to one
    picture (an RGB PNG and the same picture as opaque RGBA) never becomes a training sample."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "anim.png").write_bytes(_animation("PNG"))
    (folder / "pages.tif").write_bytes(_animation("TIFF"))
    scan = read_image_folder(ImageFolderConfig(path=str(folder)))
    assert sorted((d.path, d.reason) for d in scan.drops) == [("anim.png", "source_multiframe"), ("pages.tif", "source_multiframe")]
    picture = _scene(False)
    files = {"rgb.png": _save(picture, "PNG"), "rgba.png": _save(picture.convert("RGBA"), "PNG")}
    code, store = _import_folder(tmp_path, files, [{"before": "rgb.png", "after": "rgba.png", "caption": "a cup appeared", "id": "p"}])
    pair = _rows(store)["p"]
    assert code == 1 and (pair["drop_stage"], pair["drop_reason"]) == ("image_load", "load_no_visible_change")
    assert store.count("samples") == 0


# ---- kind 3: limits that are the ones set, and shown ----------------------------------------------

def test_max_pixels_is_honoured_above_pillows_own_limit(tmp_path):
    """A 95 MP scan under image_limits.max_pixels 200000000 loads (Pillow's own limit is 89.5 MP);
    under the 40 MP default it is dropped with the setting's number. Solid colours keep it cheap."""
    big = Image.new("L", (10_000, 9_500), 0)
    before = _save(big, "PNG")
    ImageDraw.Draw(big).rectangle([100, 100, 199, 199], fill=255)
    files = {"b.png": before, "a.png": _save(big, "PNG")}
    del big
    config = tmp_path / "limits.yaml"
    config.write_text("image_limits:\n  max_pixels: 200000000\n")
    line = [{"before": "b.png", "after": "a.png", "caption": "a white square appeared", "id": "p"}]
    code, store = _import_folder(tmp_path, files, line, "--config", str(config))
    pair = _rows(store)["p"]
    assert code == 0 and pair["status"] == "kept" and (pair["width"], pair["height"]) == (10_000, 9_500)
    verdict, detail, _ = decode_image(files["b.png"])  # the 40 MP default, the number the message gives
    assert verdict.reason == "source_too_large" and detail == "95000000 pixels > max_pixels 40000000"
    verdict, detail, _ = decode_image(files["b.png"], ImageLimits(max_pixels=90_000_000))  # above Pillow's 89.5 MP
    assert verdict.reason == "source_too_large" and detail == "95000000 pixels > max_pixels 90000000"


def test_the_limits_and_their_defaults_are_in_help(capsys):
    help_text = limits_help()
    assert "max_pixels 40,000,000 (40 MP)" in help_text and "64 MiB" in help_text and "min_side 32" in help_text
    limits = ImageLimits()
    assert (limits.max_pixels, limits.max_bytes, limits.min_side) == (40_000_000, 64 * 2**20, 32)
    for command in (["import", "folder", "--help"], ["import", "med-bench", "--help"], ["run", "--help"]):
        assert main(command) == 0
        shown = " ".join(capsys.readouterr().out.split())
        assert help_text in shown, command
        assert ("--frame" if command[0] == "import" else "image_limits.frame") in shown
    # and the limit shown is the one enforced, below Pillow's limit as above it
    small = _save(Image.new("RGB", (400, 300)), "PNG")
    verdict, detail, _ = decode_image(small, ImageLimits(max_pixels=100_000))
    assert verdict.reason == "source_too_large" and "> max_pixels 100000" in detail
    assert decode_image(small, ImageLimits(min_side=301))[0].reason == "source_too_small"


# ---- kind 4: input parsing ------------------------------------------------------------------------

def test_a_caption_with_u2028_stays_one_line(tmp_path):
    files = {"b.png": _save(_scene(False), "PNG"), "a.png": _save(_scene(True), "PNG")}
    caption = "a blue box\u2028appeared on the right"
    code, store = _import_folder(tmp_path, files, [{"before": "b.png", "after": "a.png", "caption": caption, "id": "p"}])
    assert code == 0
    assert [s["answer"] for s in store.read("samples").to_pylist()] == [caption]
    assert "\u2028" in (tmp_path / "pairs.jsonl").read_text(encoding="utf-8")  # written raw, not escaped


def test_other_line_separators_inside_strings_do_not_split_captions_files(tmp_path):
    """The image folder's captions JSONL and imgdiff's captions file: U+2029, U+0085 and a form feed
    are characters of the caption, not line ends; CRLF line ends still are."""
    from pairsmith.tasks.imgdiff.caption_source import load_captions as imgdiff_captions

    texts = ["one\u2029two", "three\x85four", "five\x0csix"]
    path = tmp_path / "c.jsonl"
    path.write_bytes("\r\n".join(json.dumps({"file": f"{i}.jpg", "caption": t}, ensure_ascii=False)
                                 for i, t in enumerate(texts)).encode("utf-8") + b"\r\n")
    assert load_captions(str(path)) == {f"{i}.jpg": [t] for i, t in enumerate(texts)}
    assert imgdiff_captions(str(path)) == texts


# ---- acceptance: an exported EXIF photo pair loads upright in `datasets`, boxes on the object ------

def test_an_exported_exif_photo_pair_loads_upright_in_datasets_with_its_boxes_on_the_object(tmp_path):
    from datasets import load_dataset

    images = tmp_path / "images"
    images.mkdir()
    (images / "photo.jpg").write_bytes(_phone_jpeg(_scene(False)))
    (images / "photo_edit.jpg").write_bytes(_phone_jpeg(_scene(True)))
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps([{"image_name": "photo.jpg", "edited_image_name": "photo_edit.jpg", "type": "Object",
                                  "question": "What was added?", "options": ["A. a blue box", "B. a cat", "C. a dog", "D. nothing"],
                                  "answer": "A"}]))
    db = str(tmp_path / "db.lance")
    assert main(["import", "med-bench", "--json", str(bench), "--images", str(images), "--db", db]) == 0
    config = tmp_path / "propose.yaml"
    config.write_text("methods: [med-edit]\ngrounding:\n  enabled: true\n")
    assert main(["run", "propose-regions", "--config", str(config), "--db", db]) == 0
    out = tmp_path / "hf"
    assert main(["export", "--db", db, "--format", "hf", "--out", str(out), "--task", "grounding", "--split", "bench"]) == 0
    data = load_dataset(str(out), cache_dir=str(tmp_path / "hf_cache"))
    rows = [row for split in data.values() for row in split]
    assert len(rows) == 1
    row = rows[0]
    shown = row["images"][0]
    assert shown.size == UPRIGHT  # datasets shows the stored picture: upright, as every viewer
    assert row["box_format"] == "pixels" and row["boxes"]
    x1, y1, x2, y2 = row["boxes"][0]
    inter = max(0, min(x2, OBJECT[2]) - max(x1, OBJECT[0])) * max(0, min(y2, OBJECT[3]) - max(y1, OBJECT[1]))
    union = (x2 - x1) * (y2 - y1) + (OBJECT[2] - OBJECT[0]) * (OBJECT[3] - OBJECT[1]) - inter
    assert inter / union > 0.5, (row["boxes"], OBJECT)
    # the object is under the box in the edited picture the loader returns (blue where the box is)
    assert row["images"][1].size == UPRIGHT
    centre = row["images"][1].convert("RGB").getpixel((int((x1 + x2) / 2), int((y1 + y2) / 2)))
    assert centre[2] > 180 and centre[0] < 80, centre
