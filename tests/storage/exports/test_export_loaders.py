"""Exports load as they are (issue 12): with `datasets` for hf, json loading for llava / sharegpt, and
LLaMA-Factory's ShareGPT and LLaVA's loading rules re-implemented here (not imported), over a database
holding renders, JPEG photos with benchmark questions, and samples that show one picture."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pairsmith.flows.cli.main import main
from pairsmith.storage.exports import EXPORT_FORMATS, export
from pairsmith.storage.exports.base import ExportOptions
from pairsmith.storage.pair_images import side_by_side
from pairsmith.storage.schemas import Message, PairRow, SampleRow, utc_now
from pairsmith.storage.store import PairStore
from tests.synthetic_db import SyntheticRun, build

ROOT = Path(__file__).resolve().parents[3]
IMAGE = "<image>"


def _jpeg(color: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def mixed_db(tmp_path_factory) -> PairStore:
    """Renders (train / val / test), 3 photo pairs with bench MCQs and a train QA, and two samples that
    show their own side-by-side picture (Img-Diff's kind) beside pair samples."""
    store = PairStore(str(tmp_path_factory.mktemp("loaders") / "db"))
    run = SyntheticRun(run_id="renders", unique_bytes=300)
    build(store, run, 24, batch_pairs=12)
    photos = [PairRow(pair_id=f"photo{i}", run_id="med", method="med-edit", image_before=_jpeg("red"),
                      image_after=_jpeg("blue"), width=64, height=48, status="kept", created_at=utc_now())
              for i in range(3)]
    store.upsert("pairs", photos)
    two = "<image>\n<image>\n"
    samples = [SampleRow(sample_id=f"bench{i}", pair_id=f"photo{i}", run_id="med", method="med-edit", task="med-mcq",
                         conversation=[Message(role="user", content=two + "Which is different? A. x B. y"),
                                       Message(role="assistant", content="A")],
                         answer="A", options=["A. x", "B. y"], category="Attribute", split="bench", created_at=utc_now())
               for i in range(3)]
    samples.append(SampleRow(sample_id="medqa", pair_id="photo0", run_id="med", method="med-edit", task="med-diff-qa",
                             conversation=[Message(role="user", content=two + "What is the primary difference?"),
                                           Message(role="assistant", content="The car is blue.")],
                             answer="The car is blue.", category="Attribute", split="train", created_at=utc_now()))
    first = run.pair_id(0)
    picture = _png(side_by_side(Image.new("RGB", (320, 240), "gray"), Image.new("RGB", (320, 240), "white")))
    for k in range(2):
        samples.append(SampleRow(sample_id=f"own{k}", pair_id=first, run_id="renders", method="imgdiff-replace",
                                 task="diff-caption",
                                 conversation=[Message(role="user", content="<image>\nWhat differs in the red box?"),
                                               Message(role="assistant", content="A cat became a dog.")],
                                 answer="A cat became a dog.", image=picture, split="train", created_at=utc_now()))
    store.upsert("samples", samples)
    return store


def llava_rules(out: Path, records: list[dict]) -> None:
    """LLaVA's LazySupervisedDataset: images under --image_folder, one <image> per image, human first,
    then human / gpt alternating."""
    for r in records:
        images = r["image"] if isinstance(r["image"], list) else [r["image"]]
        assert all((out / p).is_file() for p in images), r["id"]
        turns = r["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2), r["id"]
        assert sum(t["value"].count(IMAGE) for t in turns) == len(images), r["id"]


def llama_factory_sharegpt(dataset_dir: Path, name: str) -> list[dict]:
    """LLaMA-Factory's loading of a sharegpt entry (data/parser.py, data/converter.py, mm_plugin.py): the
    file from dataset_info.json, roles alternating user / assistant after an optional system turn, an even
    count, each image joined to media_dir (= dataset_dir) if that file exists, else used as given, and
    as many images as <image> tokens. Returns the examples with resolved image paths."""
    from datasets import load_dataset

    entry = json.loads((dataset_dir / "dataset_info.json").read_text())[name]
    assert entry["formatting"] == "sharegpt"
    columns, tags = entry["columns"], entry["tags"]
    data = load_dataset("json", data_files=os.path.join(dataset_dir, entry["file_name"]), split="train")
    accept = ((tags["user_tag"], "observation"), (tags["assistant_tag"], "function_call"))
    out = []
    for example in data:
        messages = example[columns["messages"]]
        if messages and messages[0][tags["role_tag"]] == tags.get("system_tag"):
            messages = messages[1:]
        assert all(m[tags["role_tag"]] in accept[i % 2] for i, m in enumerate(messages)), messages
        assert len(messages) % 2 == 0
        images = []
        for path in example[columns["images"]]:
            joined = os.path.join(dataset_dir, path)
            images.append(joined if os.path.isfile(joined) else path)
        assert all(os.path.isfile(p) for p in images), images
        assert sum(m[tags["content_tag"]].count(IMAGE) for m in messages) == len(images)
        out.append({"messages": messages, "images": images, "split": example["split"], "task": example["task"]})
    return out


def test_the_formats_come_from_the_registry():
    assert list(EXPORT_FORMATS) == ["llava", "sharegpt", "hf", "clevr-change"]
    assert main(["export", "--format", "csv", "--out", "x"]) == 2


def test_the_default_export_is_train_only_and_every_split_is_selectable(mixed_db, tmp_path):
    default = tmp_path / "default"
    export(mixed_db, default, "llava")
    records = json.loads((default / "llava.json").read_text())
    assert {r["split"] for r in records} == {"train"}
    assert "bench0" not in {r["id"] for r in records} and {"medqa", "own0", "own1"} <= {r["id"] for r in records}
    for r in records:  # every record says what it is
        assert {"id", "task", "split", "method", "category", "dataset", "boxes", "box_format"} <= set(r)
        if r["task"] == "grounding":
            assert r["boxes"] and r["box_format"] == "pixels"
    bench = tmp_path / "bench"
    assert main(["export", "--db", mixed_db.uri, "--format", "sharegpt", "--out", str(bench), "--split", "bench"]) == 0
    rows = json.loads((bench / "sharegpt.json").read_text())
    assert sorted(r["id"] for r in rows) == ["bench0", "bench1", "bench2"] and {r["task"] for r in rows} == {"med-mcq"}
    held = tmp_path / "held"
    export(mixed_db, held, "llava", ExportOptions(splits=["val", "test"]))
    assert {r["split"] for r in json.loads((held / "llava.json").read_text())} <= {"val", "test"}


def test_llava_loads_with_datasets_and_follows_llavas_rules(mixed_db, tmp_path):
    from datasets import load_dataset

    out = tmp_path / "llava"
    export(mixed_db, out, "llava")
    records = json.loads((out / "llava.json").read_text())
    assert all(isinstance(r["image"], list) for r in records)  # pair samples and one-picture samples alike
    llava_rules(out, records)
    data = load_dataset("json", data_files=str(out / "llava.json"), split="train")
    assert data.num_rows == len(records)
    assert data.features["image"].feature.dtype == "string" and data.features["boxes"].feature.feature.dtype == "int64"
    side = tmp_path / "side"
    export(mixed_db, side, "llava", ExportOptions(layout="side-by-side"))
    records = json.loads((side / "llava.json").read_text())
    assert all(isinstance(r["image"], str) for r in records)
    llava_rules(side, records)
    assert load_dataset("json", data_files=str(side / "llava.json"), split="train").num_rows == len(records)


def test_photos_stay_jpeg_and_renders_png(mixed_db, tmp_path):
    out = tmp_path / "side"
    export(mixed_db, out, "sharegpt", ExportOptions(layout="side-by-side"))
    formats = {p.name.split("_")[0]: Image.open(p).format for p in (out / "images").iterdir()}
    assert formats["photo0"] == "JPEG" and {f for k, f in formats.items() if not k.startswith(("photo", "own"))} == {"PNG"}


def test_sharegpt_loads_the_llama_factory_way_from_the_export_and_from_a_merged_registry(mixed_db, tmp_path, capsys):
    renders, photos = tmp_path / "renders", tmp_path / "photos"
    export(mixed_db, renders, "sharegpt")
    examples = llama_factory_sharegpt(renders, "pairsmith_renders")  # dataset_dir = the export folder
    assert len(examples) == len(json.loads((renders / "sharegpt.json").read_text())) > 0

    assert main(["export", "--db", mixed_db.uri, "--format", "sharegpt", "--out", str(photos), "--split", "bench",
                 "--absolute-paths", "--dataset-name", "med_bench"]) == 0
    assert "dataset med_bench" in capsys.readouterr().out
    mine = tmp_path / "my_data"  # the user's own dataset_dir, with an entry of theirs
    mine.mkdir()
    (mine / "theirs.json").write_text(json.dumps([{"messages": [{"role": "user", "content": "hi"},
                                                                {"role": "assistant", "content": "hello"}],
                                                   "images": [], "split": "train", "task": "chat"}]))
    registry = {"theirs": {"file_name": "theirs.json", "formatting": "sharegpt",
                           "columns": {"messages": "messages", "images": "images"},
                           "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                    "assistant_tag": "assistant", "system_tag": "system"}}}
    registry |= json.loads((photos / "dataset_info.json").read_text())  # merge, as the README says
    (mine / "dataset_info.json").write_text(json.dumps(registry))
    merged = llama_factory_sharegpt(mine, "med_bench")
    assert len(merged) == 3 and all(Path(p).is_absolute() for e in merged for p in e["images"])
    assert llama_factory_sharegpt(mine, "theirs")[0]["task"] == "chat"


def test_hf_loads_with_datasets_as_parquet_from_disk_and_by_folder(mixed_db, tmp_path):
    from datasets import load_dataset, load_from_disk

    out = tmp_path / "hf"
    result = export(mixed_db, out, "hf", ExportOptions(splits=["train", "bench"]))
    shards = sorted((out / "data").glob("*.parquet"))
    assert [p.name.rsplit("-", 1)[0] for p in shards] == ["bench-00000-of-00001", "train-00000-of-00001"]
    data = load_dataset("parquet", data_files={"train": str(out / "data" / "train-*.parquet"),
                                               "bench": str(out / "data" / "bench-*.parquet")})
    train, bench = data["train"], data["bench"]
    assert train.num_rows + bench.num_rows == result.samples and set(bench["split"]) == {"bench"}
    assert {"id", "messages", "images", "task", "split", "method", "category", "dataset", "boxes"} <= set(train.column_names)
    row = train[0]
    assert all(isinstance(img, Image.Image) for img in row["images"])  # embedded, decoded on access
    assert row["messages"][0]["content"].count(IMAGE) == len(row["images"])
    own = train.filter(lambda r: r["id"] == "own0")[0]
    assert len(own["images"]) == 1 and own["images"][0].size == (660, 240)
    assert load_from_disk(str(out / "hf_dataset"))["bench"]["id"] == bench["id"]
    by_folder = load_dataset(str(out))  # the card names the Parquet files: not an image folder
    assert set(by_folder) == {"train", "bench"} and "messages" in by_folder["train"].column_names


def test_push_to_hub_against_an_unreachable_hub_says_so_in_one_line(mixed_db, tmp_path):
    out = tmp_path / "hf"
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_test", "HF_HUB_OFFLINE": "0",
           "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}
    proc = subprocess.run([sys.executable, "-m", "pairsmith.flows.cli.main", "export", "--db", mixed_db.uri,
                           "--format", "hf", "--out", str(out), "--push-to-hub", "someone/pairsmith-test"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("pairsmith: error: --push-to-hub 'someone/")
    assert "http://127.0.0.1:9" in proc.stderr
    assert (out / "hf_dataset").is_dir()  # the export itself stands
    assert main(["export", "--db", mixed_db.uri, "--format", "llava", "--out", str(tmp_path / "x"),
                 "--push-to-hub", "a/b"]) == 2


def test_grounding_exports_in_the_box_format_of_the_model(mixed_db, tmp_path):
    out = tmp_path / "norm"
    export(mixed_db, out, "sharegpt", ExportOptions(tasks=["grounding"], box_format="norm1000"))
    for r in json.loads((out / "sharegpt.json").read_text()):
        answer = json.loads(r["messages"][1]["content"])
        assert answer == r["boxes"] and r["box_format"] == "norm1000"
        assert all(0 <= v <= 1000 for box in answer for v in box)
        assert "normalised to 0-1000" in r["messages"][0]["content"]
    resized = tmp_path / "resized"
    export(mixed_db, resized, "llava", ExportOptions(tasks=["grounding"], box_format="resized-pixels"))
    record = json.loads((resized / "llava.json").read_text())[0]
    assert "as you see it (308x252)" in record["conversations"][0]["value"]
