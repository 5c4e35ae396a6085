"""Operations commands: ``pairsmith maintain`` (the maintenance flow) and ``pairsmith versions``.

``pairsmith.flows.cli.main`` imports this module to register the commands, so the helpers from ``pairsmith.flows.cli.main`` are
imported inside the commands: importing this module first must not import ``pairsmith.flows.cli.main`` halfway.
"""

from __future__ import annotations

import click

from pairsmith.storage.db_uri import DEFAULT_DB  # standard library only


@click.command()
@click.option("--db", default=DEFAULT_DB, show_default=True, help="LanceDB URI.")
@click.option("--keep-days", type=click.FloatRange(min=0), default=7.0, show_default=True,
              help="Never remove versions younger than this (0: only if nothing else uses the database).")
@click.option("--drop-export-tags-older-than", "drop_tags_days", type=click.FloatRange(min=0), default=None,
              help="Delete export-* tags older than this many days first (default: keep them all).")
@click.option("--target-fragment-mb", type=click.FloatRange(min=1), default=256.0, show_default=True,
              help="Size small fragments are merged into; fragments over a quarter of it are left alone.")
@click.option("--verbose", is_flag=True, help="Show Prefect's task-run logs.")
def maintain(db: str, keep_days: float, drop_tags_days: float | None, target_fragment_mb: float, verbose: bool) -> None:
    """Merge small fragments and remove old versions' files; tagged (exported) versions are kept."""
    from pairsmith.flows.cli.common import CliError, open_store_or_fail, quiet_prefect
    from pairsmith.flows.cli.common import validate_config

    quiet_prefect(verbose)  # before anything imports prefect: it reads its settings once
    from pairsmith.flows.maintenance_config import MaintenanceConfig

    config = validate_config(MaintenanceConfig, {"db": db, "keep_versions_days": keep_days,
                                           "drop_export_tags_older_than_days": drop_tags_days,
                                           "target_fragment_mb": target_fragment_mb}, "options")
    store = open_store_or_fail(config.db)
    if not store.table_names():
        raise CliError(f"--db {store.uri!r}: no tables yet; nothing to maintain")
    from pairsmith.flows.cli.run import execute
    from pairsmith.flows.registry import FLOWS

    execute(FLOWS["maintenance"], config, "options", verbose)


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
