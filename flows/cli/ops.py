"""Operations commands: ``pairsmith versions`` (``pairsmith maintain`` is the maintenance flow's generated
command, ``flows/cli/main.py``'s ``FLOW_VERBS``).

``pairsmith.flows.cli.main`` imports this module to register the commands, so the helpers from ``pairsmith.flows.cli.main`` are
imported inside the commands: importing this module first must not import ``pairsmith.flows.cli.main`` halfway.
"""

from __future__ import annotations

import click

from pairsmith.storage.db_uri import DEFAULT_DB  # standard library only


@click.command()
@click.option("--db", default=DEFAULT_DB, show_default=True, help="LanceDB URI.")
@click.option("--delete", "delete", multiple=True, metavar="TAG",
              help="Delete this tag (repeat); its versions are then removed by the next 'pairsmith maintain'.")
def versions(db: str, delete: tuple[str, ...]) -> None:
    """List the tags (one per export, finetune or evaluate run) and each table's current version, or delete tags."""
    from pairsmith.flows.cli.common import CliError, open_store_or_fail
    from pairsmith.storage.versions import RUNNING, current_versions, dead_running_tags, delete_tag, list_tags

    store = open_store_or_fail(db, read_only=not delete)
    if not store.table_names():
        raise CliError(f"--db {store.uri!r}: no tables yet")
    tags = list_tags(store)
    if delete:
        unknown = [t for t in delete if t not in tags]
        if unknown:
            raise CliError(f"--delete {unknown[0]!r}: no such tag in {store.uri!r} (tags: {', '.join(sorted(tags)) or 'none'})")
        try:
            store.require_writable("deleting a tag")
        except ValueError as err:
            raise CliError(str(err)) from None
        for tag in dict.fromkeys(delete):
            delete_tag(store, tag)
            click.echo(f"Deleted tag {tag} ('pairsmith maintain' removes the versions only it held)")
        return
    dead = set(dead_running_tags(store))
    current = current_versions(store)
    click.echo("current  " + "  ".join(f"{t}@{v}" for t, v in current.items()))
    for tag, per_table in sorted(tags.items()):
        note = ("  (left by a command that died; the next export or maintain deletes it)" if tag in dead
                else "  (an export still running)" if RUNNING in tag else "")
        click.echo(f"{tag}  " + "  ".join(f"{t}@{v}" for t, v in per_table.items()) + note)
