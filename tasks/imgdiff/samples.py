"""Img-Diff's training samples, one per kept region, each with its own side-by-side picture.

* ``diff-caption`` (replacement): both images with the region boxed in red, side by side with a
  20 px black bar, and the VLM's difference caption as the answer.
* ``object-presence-mcq`` (removal): the original and the inpainted image, each with the region
  boxed in red, side by side in an order drawn from the region id; Img-Diff's question verbatim
  ("Analyse the left image and the right image ... Which image has the object related to ... within
  the red bounding box?", supplementary Fig. 10), answer A (left) or B (right). The side showing the object is stored in
  ``object_side``, so the order can be checked and balanced.
"""

from __future__ import annotations

from PIL import Image

from pairsmith.storage.ids import stable_hash, stable_id
from pairsmith.storage.pair_images import draw_boxes, side_by_side
from pairsmith.storage.schemas import Message, SampleRow, utc_now
from pairsmith.tasks.imgdiff.items import box_line_width, png_bytes
from pairsmith.tasks.imgdiff.prompts import DIFF_QUESTION, MCQ_INSTRUCTION, PRESENCE_OPTIONS, PRESENCE_QUESTION

ONE_IMAGE = "<image>\n"


def diff_caption_region_sample(
    *, pair_id: str, region_id: str, run_id: str, method: str, picture: Image.Image, box: list[float],
    difference: str, category: str | None, split: str,
) -> SampleRow:
    return SampleRow(
        sample_id=stable_id(region_id, "diff-caption"), pair_id=pair_id, run_id=run_id, method=method,
        task="diff-caption",
        conversation=[Message(role="user", content=ONE_IMAGE + DIFF_QUESTION),
                      Message(role="assistant", content=difference)],
        answer=difference, boxes=[box], image=png_bytes(picture), region_id=region_id, category=category,
        split=split, created_at=utc_now(),
    )


def object_side(region_id: str) -> str:
    """Which side of the picture shows the original (the object): drawn from the region id."""
    return "left" if int(stable_hash(["object-side", region_id], 8), 16) % 2 == 0 else "right"


def object_presence_sample(
    *, pair_id: str, region_id: str, run_id: str, method: str, original: Image.Image, inpainted: Image.Image,
    box: list[float], description: str, split: str,
) -> SampleRow:
    side = object_side(region_id)
    width = box_line_width(*original.size)
    with_object, without = draw_boxes(original, [box], width=width), draw_boxes(inpainted, [box], width=width)
    picture = side_by_side(with_object, without) if side == "left" else side_by_side(without, with_object)
    answer = "A" if side == "left" else "B"
    prompt = "\n".join([PRESENCE_QUESTION.format(description=description), *PRESENCE_OPTIONS, MCQ_INSTRUCTION])
    return SampleRow(
        sample_id=stable_id(region_id, "object-presence-mcq"), pair_id=pair_id, run_id=run_id, method=method,
        task="object-presence-mcq",
        conversation=[Message(role="user", content=ONE_IMAGE + prompt), Message(role="assistant", content=answer)],
        answer=answer, boxes=[box], options=list(PRESENCE_OPTIONS), image=png_bytes(picture), region_id=region_id,
        object_side=side, category=None, split=split, created_at=utc_now(),
    )
