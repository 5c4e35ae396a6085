"""Ids survive upgrades: a run id and its pair ids change only with what changes the output.

The default run id of every flow and the pair ids of fixed inputs are pinned here. If a change
makes one of these tests fail, that change would stop an upgraded pairsmith from resuming the
runs users already have: make the new field count for nothing at its default (or mark it
``NOT_CONTENT``), or, if new ids are intended, bump ``ID_SCHEMA_VERSION`` and pin the new values.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pairsmith.filters.imgdiff.pipelines import ImgDiffThresholds, ReplaceThresholds
from pairsmith.flows.dig_render_config import DigRenderConfig
from pairsmith.flows.finetune_config import GrpoFinetuneConfig, SftFinetuneConfig
from pairsmith.flows.imgdiff_config import ImgDiffRemoveConfig, ImgDiffReplaceConfig
from pairsmith.flows.med_edit_config import MedEditConfig
from pairsmith.storage.ids import ID_SCHEMA_VERSION, NOT_CONTENT, config_content
from pairsmith.tasks.dig.plan_scenes import dig_pair_id
from pairsmith.tasks.imgdiff.sources import plan_caption_items

MED_SOURCES = {"store": {"methods": ["dig-render"]}}


def test_the_id_schema_version_is_the_one_these_pins_were_made_with():
    assert ID_SCHEMA_VERSION == 2


def test_default_run_ids_of_every_flow_are_pinned():
    """A run id is the flow and its content key: no size, limit or batch size (issue 22, kind 3)."""
    assert DigRenderConfig().run_id() == "dig-render-45742f76bb08"
    assert ImgDiffReplaceConfig().run_id() == "imgdiff-replace-45742f76bb08"
    assert ImgDiffRemoveConfig().run_id() == "imgdiff-remove-45742f76bb08"
    assert ImgDiffRemoveConfig(source_run="imgdiff-replace-x").run_id() == "imgdiff-remove-f1851cc990cf"
    assert MedEditConfig(sources=MED_SOURCES).run_id() == "med-edit-d99e42f852b8"
    assert SftFinetuneConfig().run_name() == "finetune-sft-fca9e144cceb"
    assert GrpoFinetuneConfig().run_name() == "finetune-grpo-1a2560719962"
    assert ImgDiffThresholds().content_hash() == "45742f76bb"
    # options added later, left unset, name the same runs
    assert SftFinetuneConfig(mix={}, mix_total=None).run_name() == "finetune-sft-fca9e144cceb"
    assert DigRenderConfig(caption_style="referring").run_id() == "dig-render-45742f76bb08"


def test_the_ids_pairsmith_0_2_gave_runs_are_still_computed():
    """Runs stored before run ids dropped the sizes are found by these ids (flows/engine/resume.py)."""
    assert DigRenderConfig().legacy_run_id(20, 10) == "dig-render-7838afb8d68a"
    assert ImgDiffReplaceConfig().legacy_run_id(ImgDiffReplaceConfig().pairs, 8) == "imgdiff-replace-34d240fac4de"
    assert ImgDiffRemoveConfig(source_run="imgdiff-replace-x").legacy_run_id(
        ImgDiffRemoveConfig().pairs, 8) == "imgdiff-remove-f5241f64bd16"
    assert MedEditConfig(sources=MED_SOURCES).legacy_run_id(0, MedEditConfig(sources=MED_SOURCES).batch_size) \
        == "med-edit-af1d03112eca"


def test_pair_ids_of_fixed_inputs_are_pinned():
    assert dig_pair_id(DigRenderConfig().content_key(), 0) == "7289093665319c22"
    assert dig_pair_id(DigRenderConfig(seed=7).content_key(), 3) == "8bab96ee37e6b80d"
    items = plan_caption_items("imgdiff-replace", ImgDiffReplaceConfig().content_key(), 0, ["a cat on a mat"], range(2))
    assert [i.pair_id for i in items] == ["d151bca4c2fbab99", "8a3d02bbc0353760"]


def test_fields_that_never_change_the_output_leave_the_ids_alone():
    base = DigRenderConfig()
    moved = DigRenderConfig(db="/elsewhere/p.lance", render={"device": "gpu", "threads": 3}, show_progress=True,
                            runner={"kind": "ray"}, pairs=20)
    assert moved.content_key() == base.content_key() and moved.run_id() == base.run_id()
    replace = ImgDiffReplaceConfig(clip={"batch_size": 3}, vlm={"model_id": "Qwen/Qwen2-VL-7B-Instruct",
                                                                "max_new_tokens": 96, "batch_size": 1},
                                   runtime={"device": "cpu"})
    assert replace.content_key() == ImgDiffReplaceConfig().content_key()
    med = MedEditConfig(sources=MED_SOURCES, editor={"concurrency": 9, "base_url": "http://127.0.0.1:1"},
                        request_budget=3)
    assert med.content_key() == MedEditConfig(sources=MED_SOURCES).content_key()


def test_fields_that_change_the_output_change_the_ids():
    base = DigRenderConfig()
    assert DigRenderConfig(seed=1).content_key() != base.content_key()
    assert DigRenderConfig(render={"samples": 16}).content_key() != base.content_key()
    assert DigRenderConfig(caption_style="referring").content_key() == base.content_key()  # the default
    assert DigRenderConfig(caption_style="plain").content_key() != base.content_key()
    assert DigRenderConfig(sampling={"change_kinds": ["move"]}).content_key() != base.content_key()
    assert DigRenderConfig(pairs=21, batch_size=3).run_id() == base.run_id()  # a size only says how far it goes
    stricter = ImgDiffReplaceConfig(thresholds=ReplaceThresholds(bitm_min=0.4))
    assert stricter.content_key() != ImgDiffReplaceConfig().content_key()
    assert ImgDiffReplaceConfig(runtime={"dtype": "float16"}).content_key() != ImgDiffReplaceConfig().content_key()


def test_a_field_added_later_with_an_off_default_keeps_every_id():
    """What an upgrade does: the same config class with one more optional field."""

    class Upgraded(DigRenderConfig):
        new_option: bool = Field(False, description="some future feature, off by default")
        new_limit: int | None = None

    assert Upgraded().content_key() == DigRenderConfig().content_key()
    assert Upgraded().run_id() == DigRenderConfig().run_id()
    assert Upgraded(new_option=True).content_key() != DigRenderConfig().content_key()


def test_a_default_nested_config_counts_for_nothing_and_not_content_marks_are_honoured():
    assert config_content(DigRenderConfig()) == {}
    assert config_content(ImgDiffReplaceConfig()) == {}
    assert config_content(DigRenderConfig(seed=5, render={"samples": 16, "device": "gpu"})) == {
        "seed": 5, "render": {"samples": 16}}
    assert NOT_CONTENT == {"content": False}


def test_the_shipped_example_configs_name_the_default_runs():
    """configs/imgdiff*.yaml write every default out: they must name the same runs as no config."""
    import yaml

    root = Path(__file__).resolve().parents[2] / "configs"
    written = ImgDiffReplaceConfig(**yaml.safe_load((root / "imgdiff.yaml").read_text()))
    assert written.run_id() == ImgDiffReplaceConfig().run_id()
    written = ImgDiffRemoveConfig(**yaml.safe_load((root / "imgdiff_remove.yaml").read_text()))
    assert written.run_id() == ImgDiffRemoveConfig().run_id()
