"""Reading the files a user names: text that must be UTF-8, JSON, and paths that must stay in a folder.

Every error is one ``ValueError`` line that names the file (and the line where there is one), so
the CLI can print it as it is and exit 2. Paths taken from inside such a file (an image name in an
annotation list, a file in a captions file) are resolved with ``inside_root``: a name that leaves
the folder the user gave (``..``, an absolute path, a symlink pointing out) raises
``PathOutsideRoot`` before the file is opened.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PATH_OUTSIDE_ROOT = "path_outside_root"


class PathOutsideRoot(ValueError):
    """A path from an input file that resolves outside the folder it must stay in."""


def read_text_file(path: str | Path, label: str) -> str:
    """The file's text; ``label`` names it in errors (e.g. ``--json``). A UTF-8 byte-order mark is
    dropped. Raises a one-line ValueError for a missing, unreadable or non-UTF-8 file; the last
    names the line and column of the first bad byte."""
    source = Path(path)
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{label} {str(path)!r}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{label} {str(path)!r}: is a folder, not a file") from None
    except OSError as err:
        raise ValueError(f"{label} {str(path)!r}: cannot read ({err.strerror or err})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ValueError(f"{label} {str(path)!r} line {line}: not UTF-8 text "
                         f"(byte 0x{data[err.start]:02x} at column {column})") from None


class DuplicateKey(ValueError):
    """A JSON object that names one key twice."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json``'s object hook: a key written twice in one object is an error (json keeps the last one
    silently, as PyYAML does; the config reader refuses it too)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


def parse_json(text: str) -> Any:
    """``json.loads`` for files users give: a key written twice in one object is an error
    (``DuplicateKey``), as is anything ``json`` refuses (``json.JSONDecodeError``); both are
    ValueErrors, worded by ``json_error``. ``NaN`` and ``Infinity`` are read as Python's json and
    the public sets' own loaders read them; the fields that hold numbers refuse them."""
    return json.loads(text, object_pairs_hook=unique_keys)


def json_error(err: ValueError) -> str:
    """What is wrong, for one line that also names the file and line."""
    return f"not valid JSON ({err.msg})" if isinstance(err, json.JSONDecodeError) else str(err)


def read_json_file(path: str | Path, label: str) -> Any:
    """The parsed JSON document; errors name the file and the line."""
    text = read_text_file(path, label)
    try:
        return parse_json(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{label} {str(path)!r} line {err.lineno}: {json_error(err)}") from None
    except ValueError as err:
        raise ValueError(f"{label} {str(path)!r}: {json_error(err)}") from None


def text_lines(text: str) -> list[str]:
    """The lines of a JSONL or text file: split at "\n" only (a "\r" before it dropped).

    Not ``str.splitlines()``, which also splits at U+2028, U+2029, U+0085, form feeds and other
    characters that JSON allows unescaped inside a string: a caption holding one would be cut in two.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_jsonl_file(path: str | Path, label: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for every non-blank line (lines end at "\n" only, see
    ``text_lines``); a line that is not JSON is a ValueError."""
    for number, line in enumerate(text_lines(read_text_file(path, label)), 1):
        if not line.strip():
            continue
        try:
            yield number, parse_json(line)
        except ValueError as err:
            raise ValueError(f"{label} {str(path)!r} line {number}: {json_error(err)}") from None


def inside_root(root: str | Path, name: str | Path) -> Path:
    """``root / name`` resolved (``..`` and symlinks followed), which must lie inside ``root``.

    Raises ``PathOutsideRoot`` for a name that leaves the folder: a relative path through ``..``, an
    absolute path elsewhere, or a symlink whose target is outside. Only metadata is read (no file
    is opened); an ``OSError`` from that (a name too long for the file system) passes through.
    """
    base = Path(root).resolve()
    target = (base / name).resolve()
    if not target.is_relative_to(base):
        raise PathOutsideRoot(f"{str(name)!r} resolves outside {str(root)!r}")
    return target
