"""``pairsmith import <name>``: one sub-command per registered importer, generated from its config.

The sub-commands come from ``pairsmith.tasks.imports.IMPORTERS``; each is the ``import`` flow's
command (``pairsmith.flows.cli.run.flow_command``) with the importer's config: each option is a field
of it (``--<field>`` or the field's ``option`` name, its description as help, a choice list for a
``Literal``, a flag for a ``bool``; ``--frame`` is ``image_limits.frame``); other nested settings come
from ``--config FILE.yaml``. An importer module is imported only when its command runs, so
``pairsmith --help`` and ``pairsmith import --help`` stay fast. Bad input (a missing file or folder,
a file that is not the format, nothing listed: the config's ``check_inputs``) is one line and exit 2
before Prefect starts or the database is created; a run that keeps no pair exits 1.
"""

from __future__ import annotations

import inspect
import sys

import click

from pairsmith.flows.cli.common import quiet_prefect
from pairsmith.flows.cli.run import flow_command
from pairsmith.tasks.imports import IMPORTERS, load_importer

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
    """The sub-command of importer ``name``: the ``import`` flow's command (``flows/cli/run.py``) with the
    importer's config, its own fields first; help from the importer's module docstring."""
    importer = load_importer(name)
    module_doc = (inspect.getdoc(sys.modules[type(importer).__module__]) or "").replace("``", "")
    command = flow_command("import", command_name=name, short_help=IMPORTERS[name][1],
                           config_class=importer.config_class, doc=_click_help(module_doc))
    own = set(importer.config_class.model_fields) - set(_base_fields())
    command.params.sort(key=lambda p: p.name not in own and p.name not in ("config_path", "verbose"))
    return command


def _base_fields() -> dict:
    from pairsmith.tasks.imports.base import ImportConfig

    return ImportConfig.model_fields


def _click_help(doc: str) -> str:
    """A docstring as click help: paragraphs rewrapped, indented (example) blocks kept as written."""
    return "\n\n".join("\b\n" + p if p.startswith("    ") else p for p in doc.split("\n\n"))
