"""Click options generated from a flow's pydantic config: each flow's settings are declared once, in its config.

Which fields become options (``config_options``):

* every top-level field that is not itself a config (a str, number, bool, ``Literal``, list of
  those): ``--<field-name>`` with dashes, or the name in ``json_schema_extra={"option": NAME}``;
* a field of a nested config (``render.width``, ``sampling.change_kinds``, ``data.tasks``) only
  when the field holding that config lists it: ``render: RenderSettings = Field(...,
  json_schema_extra={"options": {"width": "width", "gpu_backend": "gpu-backend"}})`` (sub-field ->
  option name), so the config of each flow says which of its nested settings a command line
  wants (a nested config shared by many flows, such as a model's runtime, is never an option by
  itself); the rest come from ``--config FILE.yaml``;
* never ``show_progress`` (the command draws its bar on a terminal) or a field whose option is ``False``.

Each option's help is the field's description and default; its type follows the annotation (a
choice for a ``Literal``, a flag pair for a ``bool``, repeatable for a list or tuple, a range for
``ge`` / ``le`` bounds), so bad values are click's one-line errors before anything starts. Options
are never required here: a YAML config may give the value, and ``missing_options`` names what neither did.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any

import click
from pydantic import BaseModel

BASE_TYPES = {str: click.STRING, int: click.INT, float: click.FLOAT}
NEVER = ("show_progress",)


@dataclass(frozen=True)
class ConfigOption:
    """One generated option: its flag and the dotted path of the config field it sets."""

    flag: str  # "--width"
    path: str  # "render.width"
    option: click.Option

    @property
    def param(self) -> str:
        return self.option.name


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    for t in (annotation, *typing.get_args(annotation)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _bounds(field) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in field.metadata:
        for attr, key, open_ in (("ge", "min", False), ("gt", "min", True), ("le", "max", False), ("lt", "max", True)):
            value = getattr(m, attr, None)
            if value is not None:
                out[key] = value
                out[f"{key}_open"] = open_
    return out


def _param_type(annotation: Any, field) -> tuple[click.ParamType, bool, bool]:
    """(click type, multiple, is a flag) for a field's annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]  # X | None
    if annotation is bool:
        return click.BOOL, False, True
    if typing.get_origin(annotation) is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(annotation)]), False, False
    if typing.get_origin(annotation) in (list, tuple):
        item = typing.get_args(annotation)[0]
        inner, _, _ = _param_type(item, _NoBounds)
        return inner, True, False
    bounds = _bounds(field)
    if annotation is int and bounds:
        return click.IntRange(**bounds), False, False
    if annotation is float and bounds:
        return click.FloatRange(**bounds), False, False
    return BASE_TYPES.get(annotation, click.STRING), False, False


class _NoBounds:
    metadata: list = []


_FIELD_DEFAULT = object()


def _help(field, default: Any = _FIELD_DEFAULT) -> str:
    """The field's description and its default (``default``: the value in the enclosing config's default)."""
    text = (field.description or "").rstrip(".")
    if field.is_required() and default is _FIELD_DEFAULT:
        return text
    if default is _FIELD_DEFAULT:
        default = field.get_default(call_default_factory=True)
    if isinstance(default, (list, tuple)):
        default = ", ".join(str(d) for d in default) or None
    if default is not None:
        text += f" (default: {default})"
    return text


def _option(flag: str, path: str, field, default: Any = _FIELD_DEFAULT) -> ConfigOption:
    param = path.replace(".", "__")
    click_type, multiple, is_flag = _param_type(field.annotation, field)
    text = _help(field, default)
    if is_flag:
        option = click.Option([f"{flag}/--no-{flag[2:]}", param], default=None, help=text)
    else:
        option = click.Option([flag, param], type=click_type, multiple=multiple, help=text)
    return ConfigOption(flag, path, option)


def config_options(config_class: type[BaseModel]) -> list[ConfigOption]:
    """The options of ``config_class`` (rules in the module docstring), top-level fields first."""
    out: list[ConfigOption] = []
    nested: list[ConfigOption] = []
    for field_name, field in config_class.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        declared = extra.get("option")
        if declared is False or field_name in NEVER:
            continue
        model = _nested_model(field.annotation)
        if model is None:
            out.append(_option("--" + (declared or field_name.replace("_", "-")), field_name, field))
            continue
        parent = field.get_default(call_default_factory=True)  # its defaults are the ones in effect
        for sub_name, flag in extra.get("options", {}).items():  # the nested settings a command line wants
            default = getattr(parent, sub_name) if isinstance(parent, BaseModel) else _FIELD_DEFAULT
            nested.append(_option(f"--{flag}", f"{field_name}.{sub_name}", model.model_fields[sub_name], default))
    return out + nested


def set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Put an option's value into the (possibly nested) config dict, if the user gave it."""
    if value is None or value == ():
        return
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = list(value) if isinstance(value, tuple) else value


def apply_options(data: dict[str, Any], options: list[ConfigOption], values: dict[str, Any]) -> dict[str, Any]:
    """``data`` (from a YAML file) with every option the user gave laid over it."""
    for o in options:
        set_path(data, o.path, values.get(o.param))
    return data


def missing_options(config_class: type[BaseModel], data: dict[str, Any], options: list[ConfigOption]) -> list[str]:
    """Flags of required top-level fields that neither the options nor the config file gave."""
    flags = {o.path: o.flag for o in options}
    return [flags.get(name, name) for name, field in config_class.model_fields.items()
            if field.is_required() and name not in data]
