"""Every module imports with the pinned stack: the cheap guard against a silent version conflict."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["flows", "tasks", "filters", "models", "storage", "scenes"]


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        top = importlib.import_module(f"pairsmith.{package}")
        names.append(top.__name__)
        names += [m.name for m in pkgutil.walk_packages(top.__path__, prefix=f"{top.__name__}.")]
    return names


@pytest.mark.parametrize("module", _modules())
def test_project_module_imports(module):
    importlib.import_module(module)


def test_model_stack_imports_and_torchvision_ops_work():
    import diffusers  # noqa: F401
    import google.genai  # noqa: F401
    import lancedb  # noqa: F401
    import open_clip  # noqa: F401
    import peft  # noqa: F401
    import torch
    import torchvision
    import transformers  # noqa: F401
    import trl  # noqa: F401

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]  # fails with torch 2.13 + PyPI torchvision: nms op missing


@pytest.mark.parametrize("module", sorted(f"pairsmith.flows.cli.{p.stem}" for p in (ROOT / "flows" / "cli").glob("*.py")))
def test_each_command_module_imports_on_its_own(module):
    """flows/cli/main.py registers the command modules, so they must not need it imported first."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
