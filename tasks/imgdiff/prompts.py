"""What the Img-Diff flows ask the VLM and put in their samples, and how free-text answers are tidied or refused.

Every Img-Diff prompt lives here, each with its source. Img-Diff's supplementary material prints
the object-removal question (Fig. 10, ``PRESENCE_QUESTION`` with its options and instruction,
verbatim), the inpainting prompt (§19.2.3, ``InpaintConfig.prompt`` / configs/papers/imgdiff) and
CoCoT's instruction (§12, ``COCOT_PROMPT``); it does not print the captioning and describing prompts,
so ``REGION_CAPTION_PROMPT``, ``DESCRIBE_PROMPT``, ``DIFFERENCE_PROMPT`` and ``DIFF_QUESTION`` are
pairsmith's wording.

Region captions and removed-object descriptions are short noun phrases about one crop; the
difference caption sees both images side by side with the region boxed in red and is told what
the two region captions said, as in Img-Diff. An answer with no words in it is refused (the
region drops with ``<stage>_empty``), never stored as a caption.
"""

from __future__ import annotations

import re

REGION_CAPTION_PROMPT = "Describe the main object in this picture in a short phrase."
DESCRIBE_PROMPT = "What is the object in this picture? Answer with a short phrase."
# Removal describer given the box on the full image (Img-Diff supp. §19.2.4 describes it, does not print
# it): pairsmith's wording; {box} is [x1, y1, x2, y2] as fractions of the width and height, two decimals,
# the form of Img-Diff's own "bbox" field (supp. Fig. 10).
DESCRIBE_BOX_PROMPT = (
    "Describe the object in the region {box} of this image in a short phrase. The region is given as "
    "[x1, y1, x2, y2], fractions of the image's width and height."
)


def describe_box_prompt(box: list[float], width: int, height: int) -> str:
    """``DESCRIBE_BOX_PROMPT`` for a pixel box of a ``width`` x ``height`` image."""
    x1, y1, x2, y2 = box
    norm = [round(x1 / width, 2), round(y1 / height, 2), round(x2 / width, 2), round(y2 / height, 2)]
    return DESCRIBE_BOX_PROMPT.format(box="[" + ", ".join(f"{v:.2f}" for v in norm) + "]")
DIFFERENCE_PROMPT = (
    "The image shows two pictures side by side, separated by a black bar. The red box marks the same "
    "region in both. In the left picture the region shows {before}; in the right picture it shows {after}. "
    "In one or two sentences, describe the difference between the left and the right picture within "
    "the red box."
)

# Samples (tasks/imgdiff/samples.py). pairsmith's wording: the replacement question is not printed.
DIFF_QUESTION = (
    "The image shows two pictures side by side, separated by a black bar. What is the difference between "
    "the left and the right picture within the red box?"
)
# Img-Diff supplementary Fig. 10 ("object removal" data), verbatim: question, options, instruction, one a line.
PRESENCE_QUESTION = (
    "Analyse the left image and the right image (separated by the black vertical bar). "
    'Which image has the object related to "{description}" within the red bounding box?'
)
PRESENCE_OPTIONS = ("A. the left image", "B. the right image")
MCQ_INSTRUCTION = "Answer with the option's letter from the given choices directly."
# Img-Diff supplementary §12: CoCoT's instruction, asked before the question (not an evaluate prompt yet).
COCOT_PROMPT = "Please identify the similarities and differences between these two images"
# Unnatural-image filter (Img-Diff supp. §15 describes it, does not print its prompt): pairsmith's wording,
# answered by scoring "Yes" against "No" (pairsmith.filters.imgdiff.naturalness).
NATURALNESS_PROMPT = (
    "Does this image look natural, like a real photograph without distorted objects or generation artefacts? "
    "Answer Yes or No."
)

_LEADS = re.compile(r"^\s*(?:[-*#>•]+|\d+[.)])\s*")
_WORD = re.compile(r"[A-Za-z]{2,}")


def clean_answer(text: str, max_chars: int = 300) -> str | None:
    """The first non-empty line, without list markers, quotes or extra spaces; None if it has no words."""
    for line in (text or "").splitlines():
        line = _LEADS.sub("", line).strip().strip("\"'`*").strip()
        line = " ".join(line.split())
        if _WORD.search(line):
            return line if len(line) <= max_chars else line[: max_chars - 3].rstrip() + "..."
    return None
