"""Read the published MED benchmark format: a JSON list of multiple-choice items over photo pairs.

Each item is ``{image_name, edited_image_name, type, question, options, answer}``; options carry
their letters ("A. ..."), ``answer`` is the letter, ``type`` one of the 11 MED categories, and
image names are relative to the JSON file (or to a separate images folder). An entry that does
not fit the format is reported with its index and the reason, never guessed at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pairsmith.filters.mcq_answer import LETTERS
from pairsmith.tasks.med.prompts import CATEGORIES

REQUIRED = ("image_name", "edited_image_name", "type", "question", "options", "answer")


@dataclass(frozen=True)
class BenchEntry:
    index: int
    image_name: str
    edited_image_name: str
    category: str
    question: str
    options: tuple[str, ...]
    answer: str


@dataclass(frozen=True)
class BadEntry:
    index: int
    reason: str
    detail: str


def read_med_json(path: Path) -> list[BenchEntry | BadEntry]:
    """Every entry in file order; the file itself must be a JSON list (else one-line ValueError)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"--json {str(path)!r}: no such file") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"--json {str(path)!r}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, list):
        raise ValueError(f"--json {str(path)!r}: expected a JSON list of MED items, got {type(data).__name__}")
    return [_entry(i, raw) for i, raw in enumerate(data)]


def _entry(index: int, raw: object) -> BenchEntry | BadEntry:
    if not isinstance(raw, dict):
        return BadEntry(index, "import_bad_entry", f"item {index} is {type(raw).__name__}, not an object")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        return BadEntry(index, "import_bad_entry", f"item {index} lacks {', '.join(missing)}")
    options = raw["options"]
    if not (isinstance(options, list) and len(options) == len(LETTERS)
            and all(str(o).strip().startswith(f"{letter}.") for letter, o in zip(LETTERS, options))):
        return BadEntry(index, "import_bad_entry", f"item {index}: options must be 'A. ...' to 'D. ...'")
    answer = str(raw["answer"]).strip().upper()
    if answer not in LETTERS:
        return BadEntry(index, "import_bad_entry", f"item {index}: answer {raw['answer']!r} is not A-D")
    if raw["type"] not in CATEGORIES:
        return BadEntry(index, "import_bad_entry", f"item {index}: type {raw['type']!r} is not a MED category")
    return BenchEntry(index, str(raw["image_name"]), str(raw["edited_image_name"]), raw["type"],
                      str(raw["question"]).strip(), tuple(str(o).strip() for o in options), answer)


def resolve_image(name: str, json_dir: Path, images_dir: Path | None) -> Path | None:
    """The image file: relative to --images if given, else (or if not found there) to the JSON."""
    for root in ([images_dir] if images_dir else []) + [json_dir]:
        candidate = root / name
        if candidate.is_file():
            return candidate
    return None
