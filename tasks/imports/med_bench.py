"""The published MED benchmark as stored pairs and ``med-mcq`` samples.

Format (public repository beccabai/hallu_med, ``benchmark/MED_bench.json`` with
``benchmark/images/``; "Hallucination at a Glance: Controlled Visual Editing and Fine-Grained
Multimodal Learning"): a JSON list of ``{image_name, edited_image_name, type, question, options,
answer}``; options carry their letters ("A. ..."), ``answer`` is the letter, ``type`` one of MED's 11
categories, and image names are relative to the JSON file or to a separate images folder.

Every entry becomes a ``med-edit`` pair (origin ``med-bench:<json file>#<index>``) holding the
original photo and its Gemini edit as published, and its question a ``med-mcq`` sample in the
``bench`` split with the options, answer letter and category as given. Pair ids come from the
image names, sample ids from the pair and the question.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from pairsmith.tasks.answers.mcq_answer import LETTERS
from pairsmith.storage.ids import stable_id
from pairsmith.storage.input_files import read_json_file
from pairsmith.storage.schemas import Message, SampleRow, utc_now
from pairsmith.tasks.imports.base import BAD_ENTRY, BadEntry, Entry, ImportConfig, Importer
from pairsmith.tasks.imports.base import is_text
from pairsmith.tasks.med.prompts import CATEGORIES
from pairsmith.tasks.med.samples import MCQ_INSTRUCTION
from pairsmith.tasks.sample_builders import TWO_IMAGES

REQUIRED = ("image_name", "edited_image_name", "type", "question", "options", "answer")
SOURCE = "MED benchmark (DOCCI / Visual Genome photos, Gemini edits)"


class MedBenchConfig(ImportConfig):
    importer: ClassVar[str] = "med-bench"

    json_path: str = Field(description="MED_bench.json: a list of {image_name, edited_image_name, type, question, "
                           "options, answer}", json_schema_extra={"option": "json"})
    images_dir: str | None = Field(None, description="folder the image names are relative to (default: the JSON's)",
                                   json_schema_extra={"option": "images"})


class MedBenchImporter(Importer[MedBenchConfig]):
    name = "med-bench"
    method = "med-edit"
    config_class = MedBenchConfig
    sample_task = "med-mcq"
    folder_options = ("images_dir",)

    def input_files(self, config: MedBenchConfig) -> list[Path]:
        return [Path(config.json_path)]

    def image_roots(self, config: MedBenchConfig) -> list[Path]:
        """``--images`` first if given, then the JSON's folder (names are relative to either)."""
        return ([Path(config.images_dir)] if config.images_dir else []) + [Path(config.json_path).parent]

    def read(self, config: MedBenchConfig) -> list[Entry | BadEntry]:
        path = Path(config.json_path)
        data = read_json_file(path, "--json")
        if not isinstance(data, list):
            raise ValueError(f"--json {str(path)!r}: expected a JSON list of MED items, got {type(data).__name__}")
        return [_entry(path.name, i, raw) for i, raw in enumerate(data)]

    def pair_fields(self, config: MedBenchConfig, entry: Entry) -> dict[str, Any]:
        return {"model_ids": json.dumps({"source": SOURCE}), "bench_candidate": True}

    def samples(self, config: MedBenchConfig, entry: Entry, pair_id: str, run_id: str) -> list[SampleRow]:
        question, options, answer = entry.extra["question"], list(entry.extra["options"]), entry.extra["answer"]
        prompt = TWO_IMAGES + question + "\n" + "\n".join(options) + "\n" + MCQ_INSTRUCTION
        return [SampleRow(
            sample_id=stable_id(pair_id, "med-mcq", question), pair_id=pair_id, run_id=run_id, method=self.method,
            task="med-mcq",
            conversation=[Message(role="user", content=prompt), Message(role="assistant", content=answer)],
            answer=answer, options=options, category=entry.category, split="bench", dataset=self.name,
            created_at=utc_now(),
        )]


def _entry(source: str, index: int, raw: object) -> Entry | BadEntry:
    origin = f"med-bench:{source}#{index}"

    def bad(detail: str) -> BadEntry:
        return BadEntry(index, source, BAD_ENTRY, f"item {index}{detail}", origin)

    if not isinstance(raw, dict):
        return bad(f" is {type(raw).__name__}, not an object")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        return bad(f" lacks {', '.join(missing)}")
    texts = [k for k in ("image_name", "edited_image_name", "question") if not is_text(raw[k])]
    if texts:
        return bad(f": {', '.join(texts)} must be non-blank text")
    options = raw["options"]
    if not (isinstance(options, list) and len(options) == len(LETTERS) and all(is_text(o) for o in options)
            and all(o.strip().startswith(f"{letter}.") for letter, o in zip(LETTERS, options))):
        return bad(": options must be 'A. ...' to 'D. ...'")
    answer = str(raw["answer"]).strip().upper()
    if answer not in LETTERS:
        return bad(f": answer {raw['answer']!r} is not A-D")
    if raw["type"] not in CATEGORIES:
        return bad(f": type {raw['type']!r} is not a MED category")
    names = str(raw["image_name"]), str(raw["edited_image_name"])
    return Entry(index=index, key=names, before=names[0], after=names[1], origin=origin, split="bench",
                 category=raw["type"], extra={"question": str(raw["question"]).strip(),
                                              "options": tuple(str(o).strip() for o in options), "answer": answer})
