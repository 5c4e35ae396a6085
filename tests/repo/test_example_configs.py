"""The example config of every registered flow (``FlowSpec.example`` in configs/) validates against its config class."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import RootModel

from pairsmith.flows.cli.common import validate_config
from pairsmith.flows.papers import load_parameters
from pairsmith.flows.registry import FLOWS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", [n for n, s in FLOWS.items() if s.example])
def test_example_config_validates(name):
    """As the CLI reads it (``validate_config``: strict, from JSON), not only as Python would."""
    spec = FLOWS[name]
    config = validate_config(spec.config_class(), yaml.safe_load((ROOT / spec.example).read_text()), spec.example)
    if isinstance(config, RootModel):  # finetune: sft | grpo
        config = config.root
    for method in ("run_id", "run_name"):  # a run id can be derived without touching any file or model
        if hasattr(config, method):
            assert getattr(config, method)()
            break


def test_every_flow_but_import_names_an_example_and_imports_are_checked_per_importer():
    assert [n for n, s in FLOWS.items() if not s.example] == ["import"]


_PRESETS = [(paper, name, preset) for paper, entry in load_parameters().papers.items()
            for name, preset in entry.presets.items() if preset.flow != "refilter"]  # refilter's: thresholds files


@pytest.mark.parametrize("paper,name,preset", _PRESETS, ids=[f"{p}/{n}" for p, n, _ in _PRESETS])
def test_every_paper_preset_validates_as_the_cli_reads_it(paper, name, preset):
    """`pairsmith render|run|evaluate|finetune --config configs/papers/...` reads each preset strictly."""
    spec = FLOWS[preset.flow]
    data = yaml.safe_load((ROOT / preset.file).read_text())
    assert validate_config(spec.config_class(), data, preset.file) is not None
