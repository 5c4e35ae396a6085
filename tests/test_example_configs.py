"""The example configs shipped in configs/ validate against their flows' config models."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "name, model_path",
    [
        ("med_edit.yaml", "pairsmith.flows.med_edit_config:MedEditConfig"),
        ("propose_regions.yaml", "pairsmith.flows.propose_regions:ProposeRegionsConfig"),
    ],
)
def test_example_config_validates(name, model_path):
    import importlib

    module, attribute = model_path.split(":")
    model = getattr(importlib.import_module(module), attribute)
    config = model.model_validate(yaml.safe_load((ROOT / "configs" / name).read_text()))
    assert config.run_id()  # a run id can be derived without touching any file or model
