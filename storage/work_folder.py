"""Folders a command (a benchmark) fills and later deletes parts of: only ones it made itself.

``claim_work_folder`` marks a new or empty folder with a marker file and accepts a folder that has
that marker; any other non-empty folder (the user's files), a file, or a folder inside a LanceDB
database is refused with one line, so a later ``rmtree`` of a fixed name inside it never deletes
something the user put there.
"""

from __future__ import annotations

import os
from pathlib import Path


def claim_work_folder(folder: Path, marker: str, option: str) -> Path:
    """The absolute ``folder``, created or checked; ValueError naming ``option`` and why it is refused."""
    folder = Path(os.path.abspath(os.path.expanduser(str(folder))))
    shown = f"{option} {str(folder)!r}"
    if any(a.suffix == ".lance" for a in (folder, *folder.parents)):
        raise ValueError(f"{shown} is inside a LanceDB database; choose a folder outside it")
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise ValueError(f"{shown} is not a folder")
    if folder.exists() and any(folder.iterdir()) and not (folder / marker).exists():
        raise ValueError(f"{shown} is not empty and was not made by this command (no {marker}); "
                         "choose a new or empty folder: it deletes and rewrites parts of it")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / marker).touch()
    return folder
