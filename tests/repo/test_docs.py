"""The README and docs/ against a fresh clone: links resolve inside the repository, named files exist,
the data model matches the schemas, the version is the package's, shared-data skips say where to get it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CODE_PATH = re.compile(r"`((?:flows|storage|tasks|filters|models|scenes|benchmarks|tests|configs|docs)/[\w./-]+?)`")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", path.read_text(), re.M)}


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code blocks hold no links
    return [m.group(1) for m in LINK.finditer(text)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves_inside_the_repository(doc):
    assert links(doc) or doc.name != "README.md"
    for target in links(doc):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        file, _, anchor = target.partition("#")
        resolved = (doc.parent / file).resolve() if file else doc
        assert resolved.is_relative_to(ROOT), f"{doc.name}: {target} leaves the repository (dead in a fresh clone)"
        assert resolved.exists(), f"{doc.name}: {target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{doc.name}: no heading #{anchor} in {file or doc.name}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_file_the_docs_name_exists(doc):
    missing = []
    for name in CODE_PATH.findall(doc.read_text()):
        path = name.rstrip(".")
        if "*" in path or "<" in path:
            continue
        if not (ROOT / path).exists() and not (ROOT / path.rsplit(".", 1)[0]).exists():  # `flows/x.gpu_task`
            missing.append(name)
    assert not missing, f"{doc.name} names files that are not in the repository: {missing}"


def test_the_readme_points_nowhere_outside_the_clone_but_the_documented_shared_data():
    text = (ROOT / "README.md").read_text()
    for m in re.finditer(r"\.\./shared[^\s`)]*", text):
        line = text[text.rfind("\n", 0, m.start()) + 1: text.find("\n", m.end())]
        assert "PAIRSMITH_SHARED_DATA" in line, f"README uses {m.group(0)} without the variable: {line!r}"


def test_the_data_model_lists_every_column_and_only_those():
    from pairsmith.storage.schemas import TABLES

    text = (ROOT / "docs" / "data-model.md").read_text()
    sections = dict(re.findall(r"^### `(\w+)`.*?\n(.*?)(?=^### |\Z)", text, re.M | re.S))
    assert set(sections) == set(TABLES)
    for name, model in TABLES.items():
        listed = re.findall(r"^\| `(\w+)` \|", sections[name], re.M)
        assert listed == list(model.model_fields), f"docs/data-model.md table {name!r} differs from storage/schemas.py"


def test_the_docs_speak_of_the_packages_version_only():
    from importlib.metadata import version

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version("pairsmith") == declared
    for doc in DOCS:
        for named in re.findall(r"pairsmith\s+(\d+\.\d+(?:\.\d+)?)\b", doc.read_text()):
            assert declared.startswith(named), f"{doc.name} speaks of pairsmith {named}; the package is {declared}"


def test_tests_that_need_shared_data_say_where_to_get_it():
    from tests.conftest import SHARED_DATA_HELP

    assert "PAIRSMITH_SHARED_DATA" in SHARED_DATA_HELP and "docs/shared-data.md" in SHARED_DATA_HELP
    users = [p for p in (ROOT / "tests").rglob("test_*.py") if "SHARED_DATA" in p.read_text() and p.name != "test_docs.py"]
    assert users
    for path in users:
        skips = re.findall(r"(?:skip\(|reason=)f?\"[^\"]*\"", path.read_text())
        assert skips and all("SHARED_DATA_HELP" in s for s in skips), f"{path.name}: a skip without SHARED_DATA_HELP"


def test_the_quick_start_states_prefects_start_up():
    quick = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"about 10 s", quick) and "Prefect" in quick
