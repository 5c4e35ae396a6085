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


def check_db_uri(uri: str) -> str:
    """Return the URI LanceDB should open, or raise ``ValueError`` saying why it cannot be used."""
    if not uri or not uri.strip():
        raise ValueError("--db is empty: give a folder path or an object-store URI such as s3://bucket/db")
    if "://" in uri:
        scheme = urlparse(uri).scheme.lower()
        if scheme == "file":
            return _check_local(Path(urlparse(uri).path))
        if scheme not in OBJECT_STORE_SCHEMES:
            known = ", ".join(sorted(f"{s}://" for s in OBJECT_STORE_SCHEMES))
            raise ValueError(f"--db {uri!r}: unsupported URI scheme {scheme!r} (use a local path or one of {known})")
        if scheme != "memory" and not urlparse(uri).netloc:
            raise ValueError(f"--db {uri!r}: missing bucket/container name after '{scheme}://'")
        return uri
    return _check_local(Path(uri))


def _check_local(path: Path) -> str:
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"--db {str(path)!r}: is a file, not a database folder")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"--db {str(path)!r}: cannot create a folder under {str(ancestor)!r}, which is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"--db {str(path)!r}: {str(ancestor)!r} is not writable")
    return str(path)
