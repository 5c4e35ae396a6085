"""Read a user's text file (config, scenes, captions, annotations) with one-line errors.

A file that is not UTF-8 fails with the file, the line and the byte offset of the first bad byte,
instead of a ``UnicodeDecodeError`` traceback that names neither.
"""

from __future__ import annotations

from pathlib import Path


def read_text(path: str | Path, label: str | None = None) -> str:
    """The file's text; ``ValueError`` naming ``label`` (default: the path) if it is missing,
    unreadable or not UTF-8."""
    path = Path(path)
    where = label or str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{where}: is a folder, not a file") from None
    except OSError as err:
        raise ValueError(f"{where}: cannot read ({err.strerror or err})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ValueError(f"{where} line {line}: not UTF-8 text (byte {err.start}: {data[err.start:err.start + 1]!r}); "
                         "save the file as UTF-8") from None
