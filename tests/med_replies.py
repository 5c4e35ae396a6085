"""Scripted replies of MED's models for the fake Gemini server: each figure's prompt (MED Figs. 7-17)
answered in the format that figure asks for, or, where the photo's caption carries ``#fault-<step>``,
answered so that step drops the item with a reason.

The caption travels through every step (the request describes the photo with it, "NO UPDATE" keeps
it, the edited caption and the difference repeat it), so a fault marker set on a source photo reaches
the step it names. The difference type of a photo "... table N ..." is the N-th of the 11 types
(mod 11), for the edit request and the difference alike.
"""

from __future__ import annotations

import re

from pairsmith.tasks.med.prompts import CATEGORIES

FAULTS = {
    "filter-no": "med_filter_no", "filter-bad": "med_filter_unparseable",
    "request-type": "med_request_unknown_type", "request-off": "med_request_off_template",
    "complete-empty": "med_complete_empty", "caption-bad": "med_caption_unparseable",
    "difference-bad": "med_difference_unparseable", "judge1-no": "med_judge_1_no",
    "judge2-no": "med_judge_2_no", "judge2-bad": "med_judge_2_unparseable",
    "rewrite-bad": "med_rewrite_unparseable", "answer-bad": "med_bench_answer_unparseable",
    "wrong-bad": "med_bench_wrong_unparseable",
}


def _fault(prompt: str) -> str | None:
    m = re.search(r"#fault-([a-z0-9-]+)", prompt)
    return m.group(1) if m else None


def category_of(text: str) -> str:
    m = re.search(r"table (\d+)", text)
    return CATEGORIES[int(m.group(1)) % len(CATEGORIES)] if m else "Attribute"


def _thing(text: str) -> str:
    """A short reference to the photo ("the ball on table 3 #fault-...") that keeps its marker."""
    m = re.search(r"table (\d+)", text)
    marker = re.search(r"#fault-[a-z0-9-]+", text)
    return f"the ball on table {m.group(1) if m else 0}" + (f" {marker.group(0)}" if marker else "")


def med_reply(prompt: str) -> str:
    fault = _fault(prompt)
    thing = _thing(prompt)
    if prompt.startswith("Please evaluate the following sample"):  # Fig. 7
        if fault == "filter-no":
            return "## **Evaluation**\n**Final Recommendation:** **No**\n**Explanation:** too cluttered"
        if fault == "filter-bad":
            return "The image looks fine to me."
        return ("## **Evaluation**\n**Final Recommendation:** **Yes**\n**1. Image quality:**\n- **Clarity:** sharp\n"
                "**Explanation:** a clear subject that one edit can change")
    if prompt.startswith("You are a professional image prompt engineer"):  # Fig. 8
        description = re.search(r"Description of the image: (.*)", prompt).group(1).rstrip(".")
        category = category_of(prompt)
        if fault == "request-type":
            return f'Type: Sparkle\\n## Prompt: "Hi, This is a photo of {description}. Can you add glitter and output the image?"'
        if fault == "request-off":
            return f"Type: {category}\\n## Prompt: Please make {thing} blue."
        return (f'Type: {category}\\n## Prompt: "Hi, This is a photo of {description}. '
                f'Can you make {thing} blue and output the image?"')
    if prompt.startswith("Given an image, its current caption"):  # Fig. 9
        if fault == "complete-empty":
            return "   "
        return "NO UPDATE"
    if prompt.startswith("Your task is generating an accurate caption"):  # Fig. 10
        reference = re.search(r"Reference description: (.*?) Key aspect to focus on:", prompt).group(1)
        if fault == "caption-bad":
            return "A ball, now blue."
        return f"CAPTION: {reference.replace('A red ball', 'A blue ball')} The ball is blue and round."
    if prompt.startswith("Given these two image captions"):  # Fig. 11
        if fault == "difference-bad":
            return f"The colour of {thing} changed."
        return f"TYPE:{category_of(prompt)}\nDIFFERENCE:{thing[0].upper()}{thing[1:]} is blue in caption 2, red in caption 1."
    if prompt.startswith("Determine if the described difference"):  # Fig. 12
        return "No" if fault == "judge1-no" else "Yes"
    if prompt.startswith("Your task is determine if"):  # Fig. 13
        return {"judge2-no": "No", "judge2-bad": "They mostly match."}.get(fault, "Yes.")
    if prompt.startswith("I need your help to rewrite"):  # Fig. 14
        if fault == "rewrite-bad":
            return f"The second image shows {thing} in blue."
        return f"IMPROVED_DESCRIPTION: In the second image, {thing} is blue, while in the first image it is red."
    if prompt.startswith("You are analyzing the differences"):  # Fig. 16
        if fault == "answer-bad":
            return "The ball is blue now."
        return f"ANSWER: In the second image, {thing} is blue, whereas in the first image it was red."
    if prompt.startswith("Please create exactly 3"):  # Fig. 17
        if fault == "wrong-bad":
            return f"1. {thing} is green"
        return (f"wrong_answer1: In the second image, {thing} is green, whereas in the first image it was red.\n"
                f"wrong_answer2: In the second image, {thing} is red, whereas in the first image it was blue.\n"
                f"wrong_answer3: In the second image, {thing} is missing, whereas in the first image it was red.")
    return "I do not know this prompt."
