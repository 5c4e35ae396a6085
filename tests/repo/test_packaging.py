"""pairsmith installs under one name: ``pairsmith.flows``, ``pairsmith.models``, ... and nothing generic."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP = ("flows", "tasks", "filters", "models", "storage", "scenes")


def test_every_package_folder_is_listed_for_the_wheel():
    """A sub-package missing from pyproject's list would work in the editable install and be absent
    from the wheel; the list must match the folders holding an __init__.py."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(("pairsmith", *init.parent.relative_to(ROOT).parts))
               for top in TOP for init in (ROOT / top).rglob("__init__.py")}
    assert set(config["packages"]) == folders
    assert config["package-dir"] == {f"pairsmith.{top}": top for top in TOP}


@pytest.mark.parametrize("bare", TOP)
def test_a_bare_top_level_name_does_not_import(bare, tmp_path):
    """``import models`` must stay the user's own module, even from inside a pairsmith checkout."""
    done = subprocess.run([sys.executable, "-c", f"import {bare}"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode != 0
    assert f"import pairsmith.{bare}" in done.stderr
    done = subprocess.run([sys.executable, "-c", f"import pairsmith.{bare}"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
