"""The example config of every registered flow (``FlowSpec.example`` in configs/) validates against its config class."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import RootModel

from pairsmith.flows.registry import FLOWS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", [n for n, s in FLOWS.items() if s.example])
def test_example_config_validates(name):
    spec = FLOWS[name]
    config = spec.config_class().model_validate(yaml.safe_load((ROOT / spec.example).read_text()))
    if isinstance(config, RootModel):  # finetune: sft | grpo
        config = config.root
    for method in ("run_id", "run_name"):  # a run id can be derived without touching any file or model
        if hasattr(config, method):
            assert getattr(config, method)()
            break


def test_every_flow_but_import_names_an_example_and_imports_are_checked_per_importer():
    assert [n for n, s in FLOWS.items() if not s.example] == ["import"]
