"""Image Editing Request's published JSON in: one pair per object, one sample per request, the file's split."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from pairsmith.flows.import_dataset import run_import
from pairsmith.storage.store import PairStore
from pairsmith.tasks.imports.image_edit_request import ImageEditRequestConfig
from tests.public_sets import make_pair_images

ENTRIES = [
    {"img0": "Reddit.com_4wfxf2_4wfxf2.jpg", "img1": "Reddit.com_4wfxf2_d66nm3m_2.jpg",
     "sents": ["take the people out of the back", "Remove the two people behind the couple", "remove people"],
     "uid": "Reddit_1052"},
    {"img0": "Zhopped.com_gc9hq_gc9hq.webp", "img1": "Zhopped.com_gc9hq_cxyv8.webp",
     "sents": ["change the back ground", "new background", "replace the background"], "uid": "Zhopped_2"},
    {"img0": "Zhopped.com_gc9hq_gc9hq.webp", "img1": "Zhopped.com_gc9hq_cxyv8.webp",  # the same pair, asked again
     "sents": ["make it darker", "darken", "lower the brightness"], "uid": "Zhopped_9"},
]


def test_objects_become_pairs_requests_become_captions_and_valid_is_val(tmp_path):
    make_pair_images(tmp_path / "images", [(e["img0"], e["img1"]) for e in ENTRIES])
    annotations = tmp_path / "valid.json"
    annotations.write_text(json.dumps(ENTRIES, indent=4))
    config = ImageEditRequestConfig(db=str(tmp_path / "db"), annotations=str(annotations), images_dir=str(tmp_path / "images"))
    summary = run_import(config)
    assert (summary.entries, summary.pairs_kept, summary.samples, summary.splits) == (3, 3, 9, {"val": 9})
    store = PairStore(config.db)
    pairs = {p["origin"]: p for p in store.read("pairs").to_pylist()}
    assert set(pairs) == {f"image-edit-request:valid.json#{e['uid']}" for e in ENTRIES}
    answers = {}
    for s in store.read("samples").to_pylist():
        answers.setdefault(s["pair_id"], set()).add(s["answer"])
        assert (s["task"], s["dataset"], s["method"]) == ("diff-caption", "image-edit-request", "image-edit-request")
    for e in ENTRIES:
        assert answers[pairs[f"image-edit-request:valid.json#{e['uid']}"]["pair_id"]] == set(e["sents"])
    # WebP files are stored as PNG with their own format kept; JPEG stays JPEG (#11 case 8)
    jpeg, webp = pairs["image-edit-request:valid.json#Reddit_1052"], pairs["image-edit-request:valid.json#Zhopped_2"]
    assert (jpeg["image_format"], jpeg["source_format"]) == ("JPEG", "JPEG")
    assert (webp["image_format"], webp["source_format"]) == ("PNG", "WEBP")
    assert Image.open(io.BytesIO(webp["image_after"])).format == "PNG"
    original = np.asarray(Image.open(tmp_path / "images" / ENTRIES[1]["img1"]).convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(webp["image_after"])).convert("RGB")), original)
