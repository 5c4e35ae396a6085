"""Check a database URI before any work starts.

A render can take minutes; finding out at the first write that ``--db`` points at a file or an
unwritable folder would waste it. These checks are cheap, raise one short ``ValueError`` that
names the URI and the reason, and create nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_DB = "./data/pairsmith.lance"
# URI schemes LanceDB opens: object stores through its object_store backend, plus LanceDB Cloud.
OBJECT_STORE_SCHEMES = frozenset({"s3", "s3+ddb", "gs", "az", "abfs", "abfss", "memory", "db"})


def is_object_store(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def check_db_uri(uri: str, writable: bool = True) -> str:
    """Return the URI LanceDB should open, or raise ``ValueError`` saying why it cannot be used.

    ``writable`` (verbs that write): a local folder that cannot be written is refused up front.
    Verbs that only read (``stats``, ``versions``, ``contact-sheet``, ``export``) pass False, so a
    database on a read-only mount can still be inspected and exported."""
    if not uri or not uri.strip():
        raise ValueError("--db is empty: give a folder path or an object-store URI such as s3://bucket/db")
    if "://" in uri:
        scheme = urlparse(uri).scheme.lower()
        if scheme == "file":
            return _check_local(Path(urlparse(uri).path), writable)
        if scheme not in OBJECT_STORE_SCHEMES:
            known = ", ".join(sorted(f"{s}://" for s in OBJECT_STORE_SCHEMES))
            raise ValueError(f"--db {uri!r}: unsupported URI scheme {scheme!r} (use a local path or one of {known})")
        if scheme != "memory" and not urlparse(uri).netloc:
            raise ValueError(f"--db {uri!r}: missing bucket/container name after '{scheme}://'")
        return uri
    return _check_local(Path(uri), writable)


def is_writable(uri: str) -> bool:
    """Whether this process can write the local database folder ``uri`` (or create it); object stores
    are assumed writable (their permissions show at the first write)."""
    if is_object_store(uri):
        return True
    ancestor = Path(urlparse(uri).path if uri.startswith("file://") else uri).expanduser()
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not os.access(ancestor, os.W_OK | os.X_OK):  # root too is refused on a read-only mount (EROFS)
        return False
    tables = [p for p in ancestor.glob("*.lance")] if ancestor.is_dir() else []
    return all(os.access(t / "_versions", os.W_OK) for t in tables if (t / "_versions").is_dir())


def _check_local(path: Path, writable: bool = True) -> str:
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"--db {str(path)!r}: is a file, not a database folder")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"--db {str(path)!r}: cannot create a folder under {str(ancestor)!r}, which is a file")
    if writable and not is_writable(str(path)):
        raise ValueError(f"--db {str(path)!r}: {str(ancestor)!r} is not writable")
    return str(path)
