"""Every layout x box format: the grounding prompt states one coordinate frame, and the answer's numbers
are true in that frame (issue 26, kind 6: side-by-side + norm1000 said "left picture" and "whole picture")."""

from __future__ import annotations

import json
import re

import pytest

from pairsmith.storage.exports import export
from pairsmith.storage.exports.base import ExportOptions
from pairsmith.storage.store import PairStore
from tests.synthetic_db import SyntheticRun, build

FRAME_STATEMENT = re.compile(r"[Cc]oordinates (?:of the (whole picture|first image)|refer to the (\w+) picture)")


@pytest.fixture(scope="module")
def grounding_db(tmp_path_factory) -> PairStore:
    store = PairStore(str(tmp_path_factory.mktemp("frames") / "db.lance"))
    build(store, SyntheticRun(run_id="frames", unique_bytes=10), 6, batch_pairs=6)
    return store


def read_frame(prompt: str, shown: tuple[int, int], original: tuple[int, int]) -> tuple[tuple[int, int], tuple[float, float]]:
    """What a reader of ``prompt`` learns: the frame's pixel size and the numbers that span it (x, y)."""
    statements = FRAME_STATEMENT.findall(prompt)
    assert len(statements) == 1, f"the prompt states {len(statements)} coordinate frames: {prompt!r}"
    whole, _ = statements[0]
    assert whole, prompt
    frame = shown if whole == "whole picture" else original
    sizes = [tuple(map(int, m)) for m in re.findall(r"\((\d+)x(\d+)", prompt)]
    if "normalised to 0-1000" in prompt:
        span = (1000.0, 1000.0)
    elif "as you see it" in prompt:
        span = tuple(map(float, re.search(r"as you see it \((\d+)x(\d+)\)", prompt).groups()))
    else:
        span = tuple(map(float, frame))
    if whole == "whole picture" and sizes and "as you see it" not in prompt:
        assert sizes[0] == shown  # the size it states is the picture's
    return frame, span


@pytest.mark.parametrize("layout", ["multi", "side-by-side"])
@pytest.mark.parametrize("box_format", ["pixels", "norm1000", "resized-pixels"])
def test_each_prompt_states_one_frame_and_the_numbers_fit_it(grounding_db, tmp_path, layout, box_format):
    out = tmp_path / "x"
    export(grounding_db, out, "llava", ExportOptions(tasks=["grounding"], layout=layout, box_format=box_format,
                                                      splits=["train", "val", "test"]))
    stored = {r["sample_id"]: r["boxes"] for r in grounding_db.read("samples", where="task = 'grounding'").to_pylist()}
    records = json.loads((out / "llava.json").read_text())
    assert records
    original, shown = (320, 240), ((660, 240) if layout == "side-by-side" else (320, 240))
    for record in records:
        prompt, answer = record["conversations"][0]["value"], json.loads(record["conversations"][1]["value"])
        assert "left picture" not in prompt
        frame, span = read_frame(prompt, shown, original)
        assert len(answer) == len(stored[record["id"]]) and answer
        for got, true in zip(answer, stored[record["id"]]):
            # the numbers, read as the prompt says, land on the stored box (the first image sits at the origin)
            back = [got[0] * frame[0] / span[0], got[1] * frame[1] / span[1],
                    got[2] * frame[0] / span[0], got[3] * frame[1] / span[1]]
            tolerance = max(frame[0] / span[0], frame[1] / span[1])
            assert all(abs(b - t) <= tolerance for b, t in zip(back, true)), (layout, box_format, got, true)


def test_the_issue_example_side_by_side_norm1000(grounding_db, tmp_path):
    out = tmp_path / "x"
    export(grounding_db, out, "llava", ExportOptions(tasks=["grounding"], layout="side-by-side", box_format="norm1000",
                                                      splits=["train", "val", "test"]))
    record = json.loads((out / "llava.json").read_text())[0]
    prompt = record["conversations"][0]["value"]
    assert "coordinates of the whole picture (660x240: both images and the bar between them) normalised to 0-1000" in prompt
    assert "Coordinates refer to" not in prompt
    box = grounding_db.read("samples", where=f"sample_id = '{record['id']}'").to_pylist()[0]["boxes"][0]
    assert json.loads(record["conversations"][1]["value"])[0][0] == round(box[0] * 1000 / 660)  # over 660 px, not 320
