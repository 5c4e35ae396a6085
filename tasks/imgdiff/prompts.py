"""What the Img-Diff flows ask the VLM, and how its free-text answers are tidied or refused.

Region captions and removed-object descriptions are short noun phrases about one crop; the
difference caption sees both images side by side with the region boxed in red and is told what
the two region captions said, as in Img-Diff. An answer with no words in it is refused (the
region drops with ``<stage>_empty``), never stored as a caption.
"""

from __future__ import annotations

import re

REGION_CAPTION_PROMPT = "Describe the main object in this picture in a short phrase."
DESCRIBE_PROMPT = "What is the object in this picture? Answer with a short phrase."
DIFFERENCE_PROMPT = (
    "The image shows two pictures side by side, separated by a black bar. The red box marks the same "
    "region in both. In the left picture the region shows {before}; in the right picture it shows {after}. "
    "In one or two sentences, describe the difference between the left and the right picture within "
    "the red box."
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
