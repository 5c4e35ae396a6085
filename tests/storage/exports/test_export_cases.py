"""Exports under bad conditions (issue 11): atomic folders, no writes outside --out, odd and bad images,
unwritable folders, pinned versions that predate a table, and more than 2 GiB of image bytes."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from PIL import Image

from pairsmith.flows.cli.main import main
from pairsmith.storage.exports import export
from pairsmith.storage.exports.base import ExportOptions
from pairsmith.storage.schemas import PairRow, RegionRow, utc_now
from pairsmith.storage.store import PairStore
from pairsmith.storage.versions import finish_export, pin_for_export
from pairsmith.tasks.sample_builders import grounding_sample
from tests.synthetic_db import SyntheticRun, build

ALL = ["train", "val", "test"]


@pytest.fixture(scope="module")
def small_db(tmp_path_factory) -> PairStore:
    """20 synthetic render pairs (18 kept) with their regions, samples and stage stats."""
    store = PairStore(str(tmp_path_factory.mktemp("exports") / "db"))
    build(store, SyntheticRun(run_id="small", unique_bytes=500), 20, batch_pairs=10)
    return store


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _pair(pair_id: str, before: bytes, after: bytes) -> PairRow:
    return PairRow(pair_id=pair_id, run_id="odd", method="dig-render", image_before=before, image_after=after,
                   width=32, height=24, status="kept", created_at=utc_now())


def _encoded(fmt: str, color: str = "red", size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


def _grounding(pair_id: str, split: str = "train"):
    return grounding_sample(pair_id=pair_id, run_id="odd", method="dig-render", boxes=[[2.0, 3.0, 10.0, 12.0]],
                            width=32, height=24, subset="single", state_count=True, split=split, category="shape")


def test_a_non_empty_out_is_refused_and_overwrite_replaces_only_an_earlier_export_whole(small_db, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "images").mkdir()
    (out / "images" / "stale.png").write_bytes(b"the user's own file")
    for overwrite in (False, True):  # the user's files: never replaced (issue 22, kind 1)
        with pytest.raises(ValueError, match="is not a pairsmith export"):
            export(small_db, out, "llava", overwrite=overwrite)
    assert _files(out) == {"images/stale.png"}
    shutil.rmtree(out)
    export(small_db, out, "sharegpt", ExportOptions(layout="side-by-side"))
    with pytest.raises(ValueError, match="holds an earlier export; pass --overwrite"):
        export(small_db, out, "llava")
    result = export(small_db, out, "llava", overwrite=True)
    assert "sharegpt.json" not in _files(out) and (out / "llava.json").is_file()
    records = json.loads((out / "llava.json").read_text())
    referenced = {p for r in records for p in r["image"]}
    assert referenced == {f for f in _files(out) if f.startswith("images/")}  # nothing stale, nothing missing
    assert len(records) == result.samples
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left beside it


def test_exporting_twice_to_one_folder_refuses_the_second(small_db, tmp_path, capsys):
    out = tmp_path / "twice"
    assert main(["export", "--db", small_db.uri, "--format", "sharegpt", "--out", str(out)]) == 0
    before = (out / "sharegpt.json").read_text()
    capsys.readouterr()
    assert main(["export", "--db", small_db.uri, "--format", "sharegpt", "--out", str(out), "--split", "val"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds an earlier export; pass --overwrite" in err
    assert (out / "sharegpt.json").read_text() == before


def test_a_failure_mid_export_leaves_out_as_it_was(small_db, tmp_path, monkeypatch):
    from pairsmith.storage.exports.llava import LlavaFormat

    calls = []

    def failing_write(self, item):
        calls.append(item.id)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return original(self, item)

    original = LlavaFormat.write
    monkeypatch.setattr(LlavaFormat, "write", failing_write)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="No space left"):
        export(small_db, out, "llava")
    assert list(tmp_path.iterdir()) == []  # no --out, no half-written temporary folder


def test_the_cli_reports_a_failed_export_in_one_line(small_db, tmp_path, monkeypatch, capsys):
    from pairsmith.storage.exports.sharegpt import ShareGPTFormat

    def no_space(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ShareGPTFormat, "finish", no_space)
    code = main(["export", "--db", small_db.uri, "--format", "sharegpt", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "nothing written: [Errno 28] No space left on device" in err
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_out_exits_2_in_one_line(small_db, capsys, tmp_path):
    target = "/sys/pairsmith-export" if os.path.isdir("/sys/kernel") else None  # read-only even for root
    if target is None:
        pytest.skip("no /sys: cannot make a folder unwritable for root here")
    code = main(["export", "--db", small_db.uri, "--format", "llava", "--out", target])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"pairsmith: error: --out '{target}': cannot write in '/sys'")
    file = tmp_path / "file"
    file.write_text("x")
    assert main(["export", "--db", small_db.uri, "--format", "llava", "--out", str(file / "sub")]) == 2
    assert "cannot write in" in capsys.readouterr().err


def test_ids_never_write_outside_out(tmp_path):
    store = PairStore(str(tmp_path / "db"))
    evil = "../../escaped"
    store.upsert("pairs", [_pair(evil, _encoded("PNG"), _encoded("PNG", "blue"))])
    store.upsert("samples", [_grounding(evil).model_copy(update={"sample_id": "/tmp/abs"})])
    out = tmp_path / "exports" / "out"
    result = export(store, out, "llava")
    assert result.samples == 1
    assert {p.name for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents and "db" not in p.parts} == set()
    names = [p.name for p in (out / "images").iterdir()]
    assert len(names) == 2 and all(n.startswith("id-") and ".." not in n for n in names)  # hashed, not the id
    record = json.loads((out / "llava.json").read_text())[0]
    assert record["id"] == "/tmp/abs" and record["pair_id"] == evil  # the ids themselves are kept as data


def test_an_out_that_is_a_symlink_is_neither_replaced_nor_followed(small_db, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="is a symbolic link"):
            export(small_db, link, "llava", overwrite=overwrite)
    assert link.is_symlink() and list(elsewhere.iterdir()) == []  # nothing written through the link


def test_webp_and_other_pil_images_export_with_their_extension_and_bad_ones_are_counted(tmp_path):
    store = PairStore(str(tmp_path / "db"))
    store.upsert("pairs", [
        _pair("webp", _encoded("WEBP"), _encoded("WEBP", "blue")),
        _pair("jpeg", _encoded("JPEG"), _encoded("JPEG", "blue")),
        _pair("broken", b"\x89PNG\r\n\x1a\n not really", _encoded("PNG")),
    ])
    store.upsert("samples", [_grounding(p) for p in ("webp", "jpeg", "broken")])
    out = tmp_path / "out"
    result = export(store, out, "sharegpt")
    assert result.samples == 2 and result.skipped == {"image_unreadable": 1}
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == ["jpeg_after.jpg", "jpeg_before.jpg", "webp_after.webp", "webp_before.webp"]
    with Image.open(out / "images" / "webp_before.webp") as img:
        assert img.format == "WEBP" and img.size == (32, 24)
    side = tmp_path / "side"
    export(store, side, "llava", ExportOptions(layout="side-by-side"))
    kinds = {p.name: Image.open(p).format for p in (side / "images").iterdir()}
    assert kinds == {"jpeg_pair.jpg": "JPEG", "webp_pair.png": "PNG"}  # photos stay JPEG, the rest PNG


def test_the_cli_says_what_was_skipped(tmp_path, capsys):
    store = PairStore(str(tmp_path / "db"))
    store.upsert("pairs", [_pair("ok", _encoded("PNG"), _encoded("PNG")), _pair("bad", b"GIF89a", b"nope")])
    store.upsert("samples", [_grounding("ok"), _grounding("bad")])
    assert main(["export", "--db", store.uri, "--format", "llava", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "Wrote 1 samples and 2 images" in out and out.splitlines()[0].endswith("; skipped 1 image_unreadable")


def test_an_export_at_a_tag_ignores_a_table_created_after_it(small_db, tmp_path, capsys):
    store = PairStore(str(tmp_path / "db"))
    store.upsert("pairs", [_pair("p", _encoded("PNG"), _encoded("PNG"))])
    store.upsert("samples", [_grounding("p")])
    snapshot = pin_for_export(store)[1]
    finish_export(store, snapshot)
    store.upsert("regions", [RegionRow(region_id="r", pair_id="p", run_id="later", box=[0, 0, 4, 4],
                                       proposer="fastsam", status="kept", created_at=utc_now())])
    store.upsert("samples", [_grounding("p").model_copy(update={"sample_id": "later"})])
    out = tmp_path / "at"
    assert main(["export", "--db", store.uri, "--format", "llava", "--out", str(out), "--at", snapshot.tag]) == 0
    assert [r["id"] for r in json.loads((out / "llava.json").read_text())] == [_grounding("p").sample_id]
    assert f"tagged {snapshot.tag}:" in capsys.readouterr().out


@pytest.mark.slow
def test_more_than_2_gib_of_image_bytes_export(tmp_path):
    """Arrow's 32-bit offsets overflow past 2 GiB in one array: batches bounded in bytes never get there."""
    run = SyntheticRun(run_id="big", unique_bytes=4 << 20)  # 4 MiB per image, 8 MiB per pair
    store = PairStore(str(tmp_path / "db"))
    build(store, run, 290, batch_pairs=10)  # 2.3 GiB of image bytes
    kept = store.count("pairs", "status = 'kept'")
    out = tmp_path / "out"
    result = export(store, out, "llava", ExportOptions(splits=ALL))
    images = list((out / "images").iterdir())
    assert len(images) == 2 * kept == result.images
    assert sum(p.stat().st_size for p in images) > 2 << 30
    assert result.samples == store.count("samples")


def test_an_export_folder_gets_the_users_umask_not_a_private_temporary_mode(small_db, tmp_path):
    """The export is built in a mkdtemp folder (mode 0700); renamed into place, it must be readable
    by the trainer's user or container as any folder the user makes."""
    previous = os.umask(0o022)
    try:
        out = tmp_path / "shared"
        export(small_db, out, "llava")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


def test_an_export_from_a_database_that_is_not_there_says_so(tmp_path, capsys):
    missing = tmp_path / "typo.lance"
    assert main(["export", "--format", "llava", "--db", str(missing), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"pairsmith: error: --db {str(missing)!r}: no such database"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []
