"""Bad input of every kind: one line naming the file, field or line, exit 2, nothing created.

Issue 11 cases 9-12 (NaN and infinity, coerced types, an empty scenes file, non-UTF-8 files), for
scene files and for the YAML configs of every command, and a guard that every config model a user
can write rejects unknown keys and non-finite numbers.
"""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from pairsmith.flows.cli.main import main

OBJ = {"shape": "cube", "color": "red", "size": "large", "material": "metal", "position": [1.0, -0.5]}


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    _, err = capsys.readouterr()
    return code, err


def assert_one_line_error(code: int, err: str, *expected: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("pairsmith: error: "), err
    for text in expected:
        assert text in err, err


@pytest.mark.parametrize("scene_text, expected", [
    ('{"objects": [{"shape": "cube", "color": "red", "size": "large", "material": "metal", "position": [NaN, 0.5]}]}',
     ["objects[0].position[0]", "finite"]),
    ('{"objects": [{"shape": "cube", "color": "red", "size": "large", "material": "metal", "position": [0, 0], '
     '"rotation": Infinity}]}', ["objects[0].rotation", "finite"]),
    ('{"objects": [{"shape": "cube", "color": "red", "size": "large", "material": "metal", "position": ["1.0", true]}]}',
     ["objects[0].position[0]", "valid number", "'1.0'"]),
    ('{"objects": [{"shape": "cube", "color": "red", "size": "large", "material": "metal", "position": [0, 0], '
     '"rotation": "30"}]}', ["objects[0].rotation", "'30'"]),
    ("[]", ["no scenes in the file"]),
])
def test_bad_scene_values_are_rejected_not_coerced(capsys, tmp_path, scene_text, expected):
    scenes = tmp_path / "scenes.json"
    scenes.write_text(scene_text)
    db = tmp_path / "db"
    code, err = run(capsys, "render", "--scenes", str(scenes), "--db", str(db))
    assert_one_line_error(code, err, *expected)
    assert not db.exists()


def test_an_empty_scenes_folder_jsonl_and_a_non_utf8_scene_file_name_the_file(capsys, tmp_path):
    jsonl = tmp_path / "scenes.jsonl"
    jsonl.write_text("\n\n")
    code, err = run(capsys, "render", "--scenes", str(jsonl), "--db", str(tmp_path / "db"))
    assert_one_line_error(code, err, "scenes.jsonl", "no scenes")
    latin = tmp_path / "latin.json"
    latin.write_bytes(json.dumps({"objects": [OBJ]}).encode() + b"\n" + "  # café".encode("latin-1"))
    code, err = run(capsys, "render", "--scenes", str(latin), "--db", str(tmp_path / "db"))
    assert_one_line_error(code, err, "latin.json", "line 2", "not UTF-8")
    assert not (tmp_path / "db").exists()


@pytest.mark.parametrize("yaml_text, args, expected", [
    ("mllm: {model_id: m, temperature: .nan}\n", ["run", "med-edit"], ["mllm.temperature", "finite"]),
    ("render: {samples: '16'}\n", ["render"], ["render.samples", "'16'"]),
    ("pairs: 2.5\n", ["render"], ["pairs"]),
    ("sampling: {distractor_fraction: .inf}\n", ["render"], ["sampling.distractor_fraction"]),
    ("visibility: {min_mean_diff: true}\n", ["render"], ["visibility.min_mean_diff", "True"]),
    ("replace: {bitm_min: .nan}\n", ["refilter", "--run", "r"], ["replace.bitm_min", "finite"]),
    ("pairs: 2\npairs: 3\n", ["render"], ["config.yaml", "line 2", "key 'pairs' appears twice"]),
    ("render: {samples: 4, samples: 8}\n", ["render"], ["line 1", "key 'samples' appears twice"]),
])
def test_config_files_are_strict_about_numbers(capsys, tmp_path, yaml_text, args, expected):
    config = tmp_path / "config.yaml"
    if args[0] == "run":
        yaml_text += f"sources: {{folder: {{images_dir: {tmp_path}, captions: {tmp_path / 'c.jsonl'}}}}}\n"
    config.write_text(yaml_text)
    db = tmp_path / "db"
    code, err = run(capsys, *args, "--config", str(config), "--db", str(db))
    assert_one_line_error(code, err, *expected)
    assert not db.exists()


def test_a_non_utf8_config_file_names_the_file_and_line(capsys, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_bytes(b"pairs: 3\n# r\xe9sum\xe9\n")
    code, err = run(capsys, "render", "--config", str(config), "--db", str(tmp_path / "db"))
    assert_one_line_error(code, err, "config.yaml", "line 2", "not UTF-8")


def _config_models() -> set[type[BaseModel]]:
    """Every pydantic model reachable from the configs users write (flow configs, thresholds)."""
    from pairsmith.filters.imgdiff.pipelines import ImgDiffThresholds
    from pairsmith.flows.dig_render_config import DigRenderConfig
    from pairsmith.flows.evaluate_config import EvaluateConfig
    from pairsmith.flows.finetune_config import GrpoFinetuneConfig, SftFinetuneConfig
    from pairsmith.flows.imgdiff_config import ImgDiffRemoveConfig, ImgDiffReplaceConfig
    from pairsmith.flows.maintenance import MaintenanceConfig
    from pairsmith.flows.med_edit_config import MedEditConfig
    from pairsmith.flows.propose_regions import ProposeRegionsConfig
    from pairsmith.scenes.scene_config import Scene

    from pairsmith.tasks.imports import IMPORTERS, load_importer

    seen: set[type[BaseModel]] = set()
    todo = [DigRenderConfig, EvaluateConfig, SftFinetuneConfig, GrpoFinetuneConfig, ImgDiffReplaceConfig,
            ImgDiffRemoveConfig, MaintenanceConfig, MedEditConfig, ProposeRegionsConfig, ImgDiffThresholds, Scene,
            *(load_importer(name).config_class for name in IMPORTERS)]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for field in model.model_fields.values():
            stack = [field.annotation]
            while stack:
                t = stack.pop()
                if isinstance(t, type) and issubclass(t, BaseModel):
                    todo.append(t)
                stack += list(typing.get_args(t))
    return seen


def test_every_config_model_rejects_unknown_keys_and_non_finite_numbers():
    models = _config_models()
    assert len(models) > 20
    loose = sorted(m.__name__ for m in models if m.model_config.get("extra") != "forbid"
                   or m.model_config.get("allow_inf_nan") is not False)
    assert not loose, f"config models that accept unknown keys or NaN: {loose}"


def test_example_configs_still_validate_strictly(capsys):
    """The shipped configs are valid under the strict rules (they are what users copy)."""
    import yaml

    from pairsmith.flows.cli.common import validate_config
    from pairsmith.flows.finetune_config import FinetuneConfig
    from pairsmith.flows.imgdiff_config import ImgDiffRemoveConfig, ImgDiffReplaceConfig

    root = Path(__file__).resolve().parents[3] / "configs"
    for name, model in [("imgdiff.yaml", ImgDiffReplaceConfig), ("imgdiff_remove.yaml", ImgDiffRemoveConfig),
                        ("sft.yaml", FinetuneConfig), ("grpo.yaml", FinetuneConfig)]:
        validate_config(model, yaml.safe_load((root / name).read_text()), name)


def test_the_readme_error_example_is_what_the_cli_prints(capsys, tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    shown = readme.split("$ pairsmith render --scenes scenes.json\n", 1)[1].split("\n", 1)[0]
    monkeypatch.chdir(tmp_path)
    Path("scenes.json").write_text(json.dumps([{"objects": [{**OBJ, "position": ["1.0", True]}]}]))
    code, err = run(capsys, "render", "--scenes", "scenes.json", "--db", str(tmp_path / "db"))
    assert code == 2 and err.strip() == shown


def test_propose_regions_without_a_database_or_without_pairs_is_bad_input(capsys, tmp_path):
    """Nothing to propose on is exit 2 and one line, and no database folder appears (not exit 0
    with an empty run)."""
    from pairsmith.storage.schemas import PairRow, utc_now
    from pairsmith.storage.store import PairStore

    missing = tmp_path / "missing.lance"
    assert main(["run", "propose-regions", "--db", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"pairsmith: error: db {str(missing)!r}: no such database (propose-regions reads the pairs stored there)"]
    assert not missing.exists()

    store = PairStore(str(tmp_path / "renders.lance"))
    store.upsert("pairs", [PairRow(pair_id="p", run_id="r", method="dig-render", image_before=b"x", image_after=b"y",
                                   width=1, height=1, status="kept", created_at=utc_now())])
    assert main(["run", "propose-regions", "--db", store.uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no pairs of methods med-edit to propose regions on" in err[0]
    assert store.table_names() == ["pairs"]  # no run, no stage stats


def test_a_key_written_twice_in_a_json_file_is_bad_input_in_every_reader(capsys, tmp_path):
    """json keeps the last of two equal keys silently; scene files and importers' JSON / JSONL refuse
    them in one line naming the file (and line), as config YAML does, and create nothing."""
    scene = tmp_path / "scene.json"
    scene.write_text('{"objects": [], "objects": [' + json.dumps(OBJ) + "]}")
    code, err = run(capsys, "render", "--scenes", str(scene), "--db", str(tmp_path / "db"))
    assert_one_line_error(code, err, "scene.json", "key 'objects' appears twice")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"before": "a.png", "after": "b.png", "caption": "x"}\n'
                     '{"before": "a.png", "after": "b.png", "caption": "x", "caption": "y"}\n')
    code, err = run(capsys, "import", "folder", "--pairs", str(pairs), "--db", str(tmp_path / "db"))
    assert_one_line_error(code, err, "pairs.jsonl", "line 2", "key 'caption' appears twice")
    med = tmp_path / "MED_bench.json"
    med.write_text('[{"image_name": "a.jpg", "image_name": "b.jpg"}]')
    code, err = run(capsys, "import", "med-bench", "--json", str(med), "--db", str(tmp_path / "db"))
    assert_one_line_error(code, err, "MED_bench.json", "key 'image_name' appears twice")
    assert not (tmp_path / "db").exists()


@pytest.mark.parametrize("text, reason", [
    ('{"file": "a.jpg", "caption": "x"}\n{"file": "b.jpg", "caption": "y", "caption": "z"}\n',
     "line 2: key 'caption' appears twice in one object"),
    ('{"file": "a.jpg", "caption": "x"}\n{"file": "b.jpg", "caption": "y"\n',
     "line 2: not valid JSON (Expecting ',' delimiter)"),
])
def test_caption_files_refuse_a_key_written_twice_and_say_where_json_breaks(tmp_path, text, reason):
    """The med-edit photo folder's captions and Img-Diff's source captions read JSON as the importers
    do (json keeps the last of two equal keys silently): each error names the file and line."""
    from pairsmith.storage.image_folder import load_captions
    from pairsmith.tasks.imgdiff.caption_source import load_captions as load_source_captions

    path = tmp_path / "captions.jsonl"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(f"captions {str(path)!r} {reason}")):
        load_captions(str(path))
    with pytest.raises(ValueError, match=re.escape(f"captions file {str(path)!r} {reason}")):
        load_source_captions(str(path))


def test_an_option_whose_message_names_it_is_one_line_without_the_field_path():
    """A command-line option refused by its config (a read-only --db for maintain) reads as the
    option's own message, not "options: db: --db ..."; a config file still names file and field."""
    from pydantic import BaseModel, ValidationError, field_validator

    from pairsmith.scenes.scene_config import format_validation_error

    class Options(BaseModel):
        db: str

        @field_validator("db")
        @classmethod
        def _writable(cls, value):
            raise ValueError(f"--db {value!r} is not writable (a read-only mount or folder)")

    with pytest.raises(ValidationError) as err:
        Options(db="ro.lance")
    assert format_validation_error(err.value, "options") == "--db 'ro.lance' is not writable (a read-only mount or folder)"
    assert format_validation_error(err.value, "cfg.yaml").startswith("cfg.yaml: db: --db 'ro.lance'")
