"""The papers' parameters (``configs/papers/parameters.yaml``) against the presets that reproduce them.

``configs/papers/parameters.yaml`` lists, per paper, every parameter the paper states (and the
ones it leaves open, as pairsmith's assumptions): where it is stated, the value, and the dotted
config key of the preset that carries it. This module loads that list, loads each preset through
its flow's real config model, and compares: :func:`check` returns the mismatches (empty when every
preset follows its paper), :func:`table_rows` the rows ``pairsmith papers`` prints and
:func:`render_markdown` the text of ``docs/papers.md``.

Errors: a missing or malformed list or preset raises :class:`PapersError` with one line naming the
file and the entry.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pairsmith.storage.ids import plain

ROOT = Path(__file__).resolve().parents[1]
PAPERS_DIR = ROOT / "configs" / "papers"
PARAMETERS_FILE = PAPERS_DIR / "parameters.yaml"
DOC_FILE = ROOT / "docs" / "papers.md"
NOT_CARRIED = "(no key)"


class PapersError(ValueError):
    """The parameter list or a preset cannot be read; the message names the file and entry."""


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="path from the repository root")
    flow: str = Field(description="dig-render, finetune, evaluate, imgdiff-replace, imgdiff-remove, refilter or med-edit")
    command: str


class Paper(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str
    texts: list[str] = Field(default_factory=list, description="files of ../shared/papers holding its text")
    presets: dict[str, Preset]


class Parameter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    paper: str
    name: str
    where: str
    value: Any
    preset: str
    key: str | None = None
    code: str | None = None
    assumption: bool = False
    why_default: str | None = None
    note: str | None = None


class ParameterList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    papers: dict[str, Paper]
    parameters: list[Parameter]


def _flow_model(flow: str):
    """The config model each flow validates its YAML with (imported lazily: pydantic + the flow's deps)."""
    if flow == "dig-render":
        from pairsmith.flows.dig_render_config import DigRenderConfig

        return DigRenderConfig.model_validate
    if flow == "finetune":
        from pairsmith.flows.finetune_config import FinetuneConfig

        return lambda data: FinetuneConfig.model_validate(data).root
    if flow == "evaluate":
        from pairsmith.flows.evaluate_config import EvaluateConfig

        return EvaluateConfig.model_validate
    if flow == "refilter":
        from pairsmith.filters.refilterable import RefilterThresholds

        return RefilterThresholds.model_validate
    if flow == "med-edit":
        from pairsmith.flows.med_edit_config import MedEditConfig

        return MedEditConfig.model_validate
    if flow in ("imgdiff-replace", "imgdiff-remove"):
        from pairsmith.flows.imgdiff_config import ImgDiffRemoveConfig, ImgDiffReplaceConfig

        return (ImgDiffReplaceConfig if flow == "imgdiff-replace" else ImgDiffRemoveConfig).model_validate
    raise PapersError(f"unknown flow {flow!r}")


def load_parameters(path: Path = PARAMETERS_FILE) -> ParameterList:
    """The parameter list, validated: every entry names a known paper and one of its presets."""
    try:
        data = yaml.safe_load(Path(path).read_text())
        params = ParameterList.model_validate(data)
    except OSError as err:
        raise PapersError(f"{path}: cannot read: {err.strerror or err}") from None
    except (yaml.YAMLError, ValidationError) as err:
        raise PapersError(f"{path}: {' '.join(str(err).split())[:300]}") from None
    for i, p in enumerate(params.parameters):
        if p.paper not in params.papers:
            raise PapersError(f"{path}: parameters[{i}] ({p.name}): unknown paper {p.paper!r}")
        if p.preset not in params.papers[p.paper].presets:
            raise PapersError(f"{path}: parameters[{i}] ({p.name}): paper {p.paper} has no preset {p.preset!r}")
    return params


def load_preset(preset: Preset, root: Path | None = None) -> BaseModel:
    """The preset file validated by its flow's config model (what ``--config FILE`` would run)."""
    path = (root or ROOT) / preset.file
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise PapersError(f"{path}: cannot read: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise PapersError(f"{path}: not YAML: {' '.join(str(err).split())}") from None
    try:
        return _flow_model(preset.flow)(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = list(first["loc"])
        if preset.flow == "finetune" and loc and loc[0] in ("sft", "grpo"):
            loc = loc[1:]  # the method's tag of the SFT / GRPO union, not a field of the file
        msg = first["msg"].removeprefix("Value error, ")
        raise PapersError(f"{path}: {'.'.join(str(p) for p in loc) or '(top level)'}: {msg}") from None


def default_config(flow: str, method: str | None = None) -> BaseModel:
    """The flow's config with nothing set: pairsmith's defaults (finetune: of the preset's ``method``,
    GRPO if None)."""
    if flow == "med-edit":  # sources has no default: a folder placeholder, as the preset names one
        return _flow_model(flow)({"sources": {"folder": {"images_dir": "photos", "captions": "photos/captions.jsonl"}}})
    return _flow_model(flow)({"method": method or "grpo"} if flow == "finetune" else {})


def resolve(config: Any, key: str, through_none: bool = False) -> Any:
    """The value at a dotted ``key`` (``a.b``, list items by index ``stages.0.steps``, every item ``stages.*.subsets``;
    a property of a config model too, e.g. ``train.batch_size``).

    Raises KeyError naming the part of the key that is missing; ``through_none``: an optional section
    that is off (None, as ``grpo.validation`` by default) gives None for every key inside it."""
    parts = key.split(".")
    value = config
    for i, part in enumerate(parts):
        if value is None and through_none:
            return None
        if part == "*":
            rest = ".".join(parts[i + 1:])
            return [resolve(item, rest) if rest else item for item in value]
        if isinstance(value, BaseModel):
            if part not in type(value).model_fields and not isinstance(getattr(type(value), part, None), property):
                raise KeyError(f"{key}: no field {part!r}")
            value = getattr(value, part)
        elif isinstance(value, dict):
            value = value[part]
        elif isinstance(value, (list, tuple)) and part.isdigit():
            value = value[int(part)]
        else:
            raise KeyError(f"{key}: cannot read {part!r} of {type(value).__name__}")
    return value


def same(paper: Any, actual: Any, partial: bool = False) -> bool:
    """Paper value equals a config value: tuples as lists, floats to 1e-9, a dict against a list by its
    keys; ``partial``: a dict of the paper's is compared on its own keys only (a section of a config)."""
    paper, actual = plain(paper), plain(actual)
    if partial and isinstance(paper, dict) and isinstance(actual, dict):
        return all(k in actual and same(v, actual[k]) for k, v in paper.items())
    if isinstance(actual, dict) and isinstance(paper, list):
        return sorted(actual) == sorted(paper)
    if isinstance(paper, bool) or isinstance(actual, bool):
        return paper is actual
    if isinstance(paper, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(paper, actual, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(paper, list) and isinstance(actual, list):
        return len(paper) == len(actual) and all(same(p, a) for p, a in zip(paper, actual))
    if isinstance(paper, dict) and isinstance(actual, dict):
        return paper.keys() == actual.keys() and all(same(paper[k], actual[k]) for k in paper)
    return paper == actual


def code_value(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass
class Row:
    """One parameter as ``pairsmith papers`` prints it."""

    paper: str
    name: str
    where: str
    paper_value: Any
    assumption: bool
    preset: str
    key: str | None
    code: str | None
    preset_value: Any
    default_value: Any
    why_default: str | None
    note: str | None
    problems: list[str]


def _missing(_):
    return NOT_CARRIED


def table_rows(name: str | None = None, params: ParameterList | None = None, root: Path | None = None) -> list[Row]:
    """Every parameter of paper ``name`` (all papers if None) with its preset and default values and
    the problems found: a preset value that differs from the paper's, a default that differs with no
    reason given, a key the config does not have, a code constant that differs."""
    root = root or ROOT
    params = params or load_parameters(root / "configs" / "papers" / "parameters.yaml")
    if name is not None and name not in params.papers:
        raise PapersError(f"unknown paper {name!r}; known: {', '.join(params.papers)}")
    presets: dict[tuple[str, str], BaseModel] = {}
    defaults: dict[tuple[str, str | None], BaseModel] = {}
    rows = []
    for p in params.parameters:
        if name is not None and p.paper != name:
            continue
        preset = params.papers[p.paper].presets[p.preset]
        if (p.paper, p.preset) not in presets:
            presets[(p.paper, p.preset)] = load_preset(preset, root)
        flow_key = (preset.flow, getattr(presets[(p.paper, p.preset)], "method", None))
        if flow_key not in defaults:
            defaults[flow_key] = default_config(*flow_key)
        problems = []
        preset_value = default_value = NOT_CARRIED
        if p.key is not None:
            try:
                preset_value = resolve(presets[(p.paper, p.preset)], p.key)
                default_value = resolve(defaults[flow_key], p.key, through_none=True)
                if isinstance(p.value, dict):  # a section: show the keys the paper states
                    preset_value, default_value = (
                        {k: v for k, v in plain(x).items() if k in p.value} if isinstance(plain(x), dict) else x
                        for x in (preset_value, default_value))
            except (KeyError, IndexError) as err:
                problems.append(f"{preset.file}: {err.args[0] if err.args else p.key}")
            else:
                if not same(p.value, preset_value, partial=True):
                    problems.append(f"{preset.file}: {p.key} is {plain(preset_value)!r}, the paper's is {p.value!r}")
                if not same(p.value, default_value, partial=True) and not p.why_default:
                    problems.append(f"{p.key}: the default {plain(default_value)!r} differs and why_default is empty")
        if p.code is not None:
            actual = code_value(p.code)
            if p.key is None:
                preset_value = default_value = actual  # a constant: every run uses it
            if not same(p.value, actual):
                problems.append(f"{p.code} is {plain(actual)!r}, the paper's is {p.value!r}")
        rows.append(Row(
            paper=p.paper, name=p.name, where=p.where, paper_value=p.value, assumption=p.assumption,
            preset=p.preset, key=p.key, code=p.code, preset_value=preset_value, default_value=default_value,
            why_default=p.why_default, note=p.note, problems=problems,
        ))
    return rows


def check(name: str | None = None, root: Path | None = None) -> list[str]:
    """Every problem of every row: empty when each preset carries its paper's values."""
    return [f"{r.paper}: {r.name}: {problem}" for r in table_rows(name, root=root) for problem in r.problems]


def fmt(value: Any) -> str:
    value = plain(value)
    if value == NOT_CARRIED:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    return repr(value) if isinstance(value, float) and 0 < abs(value) < 1e-3 else str(value)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render_markdown(params: ParameterList | None = None, root: Path | None = None) -> str:
    """The text of ``docs/papers.md``: per paper, its presets and one table row per parameter."""
    root = root or ROOT
    params = params or load_parameters(root / "configs" / "papers" / "parameters.yaml")
    out = [
        "# The papers, parameter by parameter",
        "",
        "Generated from `configs/papers/parameters.yaml` by `pairsmith papers --markdown`; do not edit by hand",
        "(`tests/flows/test_papers.py` fails when this file is stale). *Paper* is the paper's value, *preset* the",
        "value the preset runs with, *default* pairsmith's default for the same key. Rows marked",
        "**assumed** are values the paper does not state: pairsmith's choice, not the paper's. A dash in",
        "*key* means no config key carries the value; the note says where it lives or what is missing. A",
        "`module:NAME` key is a constant of the code, the same for every run.",
        "",
    ]
    for name, paper in params.papers.items():
        out += [f"## {name}: {paper.title}", "", "| preset | flow | command |", "|---|---|---|"]
        out += [f"| `{k}` | {p.flow} | `{p.command}` |" for k, p in paper.presets.items()]
        out += ["", "| parameter | where | paper | preset | key | preset value | default | why the default differs / note |",
                "|---|---|---|---|---|---|---|---|"]
        for r in table_rows(name, params, root):
            paper_cell = f"{fmt(r.paper_value)} (**assumed**)" if r.assumption else fmt(r.paper_value)
            notes = "; ".join(t for t in (r.why_default, r.note) if t)
            key = f"`{r.key}`" if r.key else f"`{r.code}`" if r.code else "–"
            cells = [r.name, r.where, paper_cell, r.preset, key,
                     fmt(r.preset_value), fmt(r.default_value), notes]
            out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        out.append("")
    return "\n".join(out)


def preset_run_ids(root: Path | None = None) -> dict[str, str]:
    """Run id -> ``paper/preset (file)`` for every preset whose config names its run (``run_id_of``):
    a stored run whose id is here ran that preset's content (ids come from the content only, so
    ``--pairs`` and other non-content options keep the preset's id; any content change gives another)."""
    from pairsmith.flows.engine.run_name import run_id_of

    params = load_parameters((root or ROOT) / "configs" / "papers" / "parameters.yaml")
    found: dict[str, str] = {}
    for paper, entry in params.papers.items():
        for name, preset in entry.presets.items():
            try:
                run_id = run_id_of(load_preset(preset, root))
            except Exception:  # noqa: BLE001  (a preset without a run id of its own, e.g. refilter's)
                run_id = None
            if run_id:
                found.setdefault(run_id, f"{paper}/{name} ({preset.file})")
    return found
