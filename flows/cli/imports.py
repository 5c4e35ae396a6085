"""``pairsmith import <name>``: one sub-command per registered importer, generated from its config.

The sub-commands come from ``pairsmith.tasks.imports.IMPORTERS``; each option is a field of the
importer's pydantic config (``--<field>`` or the field's ``option`` name, its description as help,
a choice list for a ``Literal``, a flag for a ``bool``); nested settings (``image_limits``) come from
``--config FILE.yaml``. An importer module is imported only when its command runs, so ``pairsmith
--help`` and ``pairsmith import --help`` stay fast. Bad input (a missing file or folder, a file that
is not the format, nothing listed) is one line and exit 2 before Prefect starts or the database is
created; a run that keeps no pair exits 1.
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from typing import Any

import click
from pydantic import BaseModel

from pairsmith.flows.cli.common import (
    EXIT_FAILED, CliError, describe_failure, load_yaml, open_store_or_fail, quiet_prefect, set_option, validate_config,
)
from pairsmith.tasks.imports import IMPORTERS, load_importer

BASE_TYPES = {str: click.STRING, int: click.INT, float: click.FLOAT}


class ImportGroup(click.Group):
    """The ``import`` group: commands listed from the registry, built on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(IMPORTERS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return importer_command(name) if name in IMPORTERS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):  # from the registry: listing imports no importer
            formatter.write_dl([(name, summary) for name, (_, summary) in IMPORTERS.items()])

    def resolve_command(self, ctx: click.Context, args: list[str]):
        # The importer module imports Prefect, which reads its console settings once, on import.
        quiet_prefect("--verbose" in args)
        return super().resolve_command(ctx, args)


@click.group("import", cls=ImportGroup)
def import_group() -> None:
    """Import published image-difference data sets as pairs and samples."""


def importer_command(name: str) -> click.Command:
    """The sub-command of importer ``name``: options from its config, help from its module docstring."""
    from pairsmith.tasks.imports.base import ImportConfig

    importer = load_importer(name)
    config_class = importer.config_class
    own_first = sorted(config_class.model_fields.items(), key=lambda kv: kv[0] in ImportConfig.model_fields)
    params: list[click.Parameter] = [
        _option(config_class, field_name, field) for field_name, field in own_first if not _nested(field.annotation)
    ]
    from pairsmith.storage.image_decode import limits_help

    params += [
        click.Option(["--frame"], type=click.IntRange(min=0), help="Frame (0-based) of animated or multi-page "
                     "images to use (image_limits.frame); without it such an image is a source_multiframe row."),
        click.Option(["--config", "config_path"], help=f"YAML file with {config_class.__name__} fields "
                     f"(e.g. {limits_help()}); options override it."),
        click.Option(["--verbose"], is_flag=True, help="Show Prefect's task-run logs."),
    ]
    module_doc = (inspect.getdoc(sys.modules[type(importer).__module__]) or "").replace("``", "")

    def callback(config_path: str | None, verbose: bool, frame: int | None, **values: Any) -> None:
        _run(importer, config_path, {**values, "image_limits.frame": frame})

    return click.Command(name, params=params, callback=callback, short_help=IMPORTERS[name][1],
                         help=_click_help(module_doc))


def _click_help(doc: str) -> str:
    """A docstring as click help: paragraphs rewrapped, indented (example) blocks kept as written."""
    return "\n\n".join("\b\n" + p if p.startswith("    ") else p for p in doc.split("\n\n"))


def _run(importer, config_path: str | None, values: dict[str, Any]) -> None:
    from pairsmith.tasks.imports.base import option_name

    config_class = importer.config_class
    data = load_yaml(config_path)
    for field_name, value in values.items():
        set_option(data, field_name, value)
    for field_name, field in config_class.model_fields.items():
        if field.is_required() and field_name not in data:
            raise CliError(f"missing option {option_name(config_class, field_name)}")
    config = validate_config(config_class, data, config_path or "options")
    try:
        importer.check(config)  # a broken file or folder is one line, before Prefect starts
    except ValueError as err:
        raise CliError(str(err)) from None
    store = open_store_or_fail(config.db)
    from pairsmith.flows.engine.funnel import format_funnel, run_funnel
    from pairsmith.flows.import_dataset import run_import

    try:
        summary = run_import(config)
    except Exception as err:  # the flow run failed; committed batches stay and the same command resumes
        click.echo(f"pairsmith: error: run {importer.run_id(config)} failed: {describe_failure(err)}", err=True)
        raise click.exceptions.Exit(EXIT_FAILED) from None
    files = ", ".join(str(f) for f in importer.input_files(config))
    click.echo(f"Imported {summary.entries} entries from {files} into {summary.db} (run {summary.run_id}): "
               f"{summary.pairs_kept} pairs kept, {summary.pairs_dropped} dropped, "
               f"{summary.samples} {summary.sample_task} samples")
    if summary.duplicates:
        click.echo(f"{summary.duplicates} entries repeated an earlier entry exactly and were stored once")
    if summary.batches_resumed:
        click.echo(f"{summary.batches_resumed} of {summary.batches} batches were already stored")
    click.echo("splits: " + (", ".join(f"{s} ({n})" for s, n in summary.splits.items()) or "none"))
    if summary.categories:
        click.echo("categories: " + ", ".join(f"{c} ({n})" for c, n in summary.categories.items()))
    if summary.entries_retried:
        click.echo(f"{summary.entries_retried} dropped entries were tried again "
                   "(an image file changed, or --retry-failed)")
    funnel = run_funnel(store, summary.run_id)
    click.echo(format_funnel(funnel))
    kept = funnel[-1].n_kept if funnel else 0  # the exit status follows the run's own funnel
    if kept > summary.pairs_kept:
        click.echo(f"{kept - summary.pairs_kept} of its kept pairs are now stored under another run: an import of "
                   "the same entries with other options re-wrote them (see 'pairsmith stats --list')")
    if kept == 0:
        click.echo(f"pairsmith: error: run {summary.run_id} kept no pair (see the reasons above)", err=True)
        raise click.exceptions.Exit(EXIT_FAILED)


def _nested(annotation: Any) -> bool:
    return any(isinstance(t, type) and issubclass(t, BaseModel) for t in (annotation, *typing.get_args(annotation)))


def _option(config_class: type[BaseModel], field_name: str, field) -> click.Option:
    """A click option for one config field: its type, help and default shown, never required here
    (a YAML config may give it; ``_run`` names a missing one)."""
    from pairsmith.tasks.imports.base import option_name

    annotation = field.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]  # X | None
    help_text = (field.description or "").rstrip(".")
    if not field.is_required() and field.default is not None:
        help_text += f" (default: {field.default})"
    flag = option_name(config_class, field_name)
    if annotation is bool:
        return click.Option([f"{flag}/--no-{flag[2:]}", field_name], default=None, help=help_text)
    if typing.get_origin(annotation) is typing.Literal:
        return click.Option([flag, field_name], type=click.Choice([str(a) for a in typing.get_args(annotation)]),
                            help=help_text)
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return click.Option([flag, field_name], type=BASE_TYPES.get(item, click.STRING), multiple=True, help=help_text)
    return click.Option([flag, field_name], type=BASE_TYPES.get(annotation, click.STRING), help=help_text)
