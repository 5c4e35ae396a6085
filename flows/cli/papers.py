"""``pairsmith papers [NAME] [--check] [--markdown]``: each paper's parameters against its presets.

Reads ``configs/papers/parameters.yaml`` and the presets it names (``pairsmith.flows.papers``);
prints per parameter where the paper states it, the paper's value, the preset's value, pairsmith's
default and why the default differs. ``--check`` exits 1 when a preset departs from its paper;
``--markdown`` prints the text of ``docs/papers.md``.
"""

from __future__ import annotations

import click

from pairsmith.flows.cli.common import EXIT_FAILED, CliError


@click.command()
@click.argument("name", required=False)
@click.option("--check", "check_only", is_flag=True,
              help="Only compare every preset with its paper; exit 1 and list what differs.")
@click.option("--markdown", is_flag=True, help="Print docs/papers.md (the table of every paper) instead.")
def papers(name: str | None, check_only: bool, markdown: bool) -> None:
    """The papers' parameters: paper value, preset value, default and why the default differs."""
    from pairsmith.flows.papers import PapersError, check, fmt, render_markdown, table_rows

    try:
        if markdown:
            if name is not None:
                raise CliError("--markdown prints every paper; leave NAME out")
            click.echo(render_markdown(), nl=False)
            return
        problems = check(name)
        if not check_only:
            rows = table_rows(name)
            for paper in dict.fromkeys(r.paper for r in rows):
                click.echo(f"== {paper}")
                for r in (r for r in rows if r.paper == paper):
                    mark = " (assumed: the paper does not state it)" if r.assumption else ""
                    click.echo(f"{r.name}{mark}  [{r.where}]")
                    click.echo(f"    {'assumed' if r.assumption else 'paper'} {fmt(r.paper_value)} | preset {r.preset}: {fmt(r.preset_value)}"
                               f" | default {fmt(r.default_value)}" + (f" | key {r.key}" if r.key else f" | constant {r.code}" if r.code else " | no key"))
                    for text in (r.why_default, r.note):
                        if text:
                            click.echo(f"    {' '.join(text.split())}")
    except PapersError as err:
        raise CliError(str(err)) from None
    if problems:
        for problem in problems:
            click.echo(f"pairsmith: error: {problem}", err=True)
        raise click.exceptions.Exit(EXIT_FAILED)
    if check_only:
        click.echo(f"every preset of {name or 'every paper'} carries the paper's values")
