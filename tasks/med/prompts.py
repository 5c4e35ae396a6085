"""MED's prompts, verbatim from the paper's figures, and how each answer is read.

Source: "Hallucination at a Glance" (MED, Micro Edit Dataset), §3 and Appendix Figs. 7-17. Each
``*_PROMPT`` below is its figure's text as printed (whitespace aside: the extracted text flattens
line breaks, which are restored here; typos such as "Specifity", "strctly" and the unbalanced quote
of Fig. 17 are the paper's). Two figures elide part of their prompt with "....." (Fig. 13 after the
inputs, Fig. 14 after the prompt): the elided part is left out. Fig. 16 prints no place for its input
(only an example); ``RIGHT_ANSWER_INPUT`` appends it in the example's own form (pairsmith's addition).

Every parser returns the parsed value or raises ``Unparsed(reason)`` naming why the reply does not
fit the format its figure asks for; the calling step counts that reason and drops the item (never the
batch). tests/tasks/med/test_med_prompts.py compares every prompt with ../shared/papers (whitespace normalised).
"""

from __future__ import annotations

import re

# MED Fig. 8 (and Fig. 11): the 11 composition categories and their descriptions, as printed.
CATEGORY_DESCRIPTIONS: dict[str, str] = {
    "Object": "Adding or removing entities (people, animals, food, vehicles, objects)",
    "Attribute": "Changing visual properties (color, material, size, shape)",
    "Scene": "Modifying backgrounds or settings",
    "Spatial Relation": "Altering physical arrangements (right, left, on top, below, inside)",
    "Action Relation": "Changing interactions between entities",
    "Part Relation": "Modifying part-whole relationships (body parts, clothing, accessories)",
    "Counting": "Adjusting quantity of entities",
    "Differentiation": "Distinguishing objects by attributes",
    "Comparison": "Changing relative characteristics",
    "Negation": "Removing elements",
    "Universality": "Applying changes to all members of a group",
}
CATEGORIES: tuple[str, ...] = tuple(CATEGORY_DESCRIPTIONS)

# MED Fig. 7 (Qwen2.5-VL-72B filters editable images; only a strict "Yes" is kept, §3.1). {caption}
FILTER_PROMPT = """\
Please evaluate the following sample--which includes an image and accompanying text (question-answer pair or description)--based on the criteria listed below. Your response must STRICTLY follow the format of the provided example. For each criterion, provide a brief analysis, and conclude with a clear "Yes" or "No" recommendation.
Caption of the image: {caption}
## **Evaluation**
**Final Recommendation:** **Yes** or **No**
**1. Image quality:**
- **Clarity:** [Evaluate if the image is sharp, free of blur, and low in noise]
- **Main Subject:** [Evaluate if there is a clearly identifiable primary subject in the image]
- **Background Complexity:** [Evaluate whether the background is simple and free of excessive clutter]
**2. Text_Clarity (Description):**
- **Specifity:** [Evaluate if the description is clear, specific, and unambiguous]
- **Uniquenes:** [Evaluate if the text provides straightforward, unique information without ambiguity]
**3. Editing Potential:**
- **Identifiable Editable Elements:** [Evaluate if the image contains clearly identifiable objects or attributes that can be modified]
- **Impact_on_Text_Accuracy:** [Evaluate whether applying an edit would make the original text incorrect]
**4. Interference Factors:**
- **Visual_Distractions:** [Evaluate whether there are distracting elements or complex scenes that might hinder a clear edit]
- **Subjectivity in Text:** [Evaluate if the text contains subjective aspects that could interfere with evaluation]
**Explanation:** [Provide a brief explanation supporting your recommendation]

IMPORTANT: Your answer MUST follow this EXACT format, with bold section headers and bullet points as shown above. Your Final Recommendation must clearly state either "**Yes**" or "**No**" in bold."""

# MED Fig. 8 (Qwen2.5-VL-72B writes the edit request). Positional {}: the image's description.
REQUEST_PROMPT = """\
You are a professional image prompt engineer specializing in image editing instructions.
Analyze the provided image and any accompanying text, then generate a clear editing prompt based on what you see.
Description of the image: {}
Your editing prompt must follow this exact structure: "Hi, This is a photo of [brief description of the current image]. Can you [specific editing instruction] and output the image?"
Choose an appropriate editing instruction from these composition categories:
BASIC COMPOSITIONS:
- Object: Adding or removing entities (people, animals, food, vehicles, objects)
- Attribute: Changing visual properties (color, material, size, shape)
- Scene: Modifying backgrounds or settings
- Spatial Relation: Altering physical arrangements (right, left, on top, below, inside)
- Action Relation: Changing interactions between entities
- Part Relation: Modifying part-whole relationships (body parts, clothing, accessories)
ADVANCED COMPOSITIONS:
- Counting: Adjusting quantity of entities
- Differentiation: Distinguishing objects by attributes
- Comparison: Changing relative characteristics
- Negation: Removing elements
- Universality: Applying changes to all members of a group
Examples:
- "Hi, This is a photo of a dog with biscuits on its head. Can you subtract one biscuit on its head and output the image?"
- "Hi, This is a picture of a highway. Can you add two vehicles on its left side and output the image?"
- "Hi, This is a photo of a table. Can you only move the phone out of this scene and output the image?"
Based solely on what you observe in the provided image, first indicate which composition type you're using (Prioritize COMPOSITIONS other than 'Object'. Only choose 'Object' if other types cannot effectively demonstrate the editing possibilities of the image.), then create the appropriate editing prompt.
Your response should be in this format:
Type: [composition type]\\n## Prompt: [your editing prompt]\\n"""

# MED Fig. 9 (step 1, §3.2: complete the original caption; "NO UPDATE" keeps it). {original_description}, {edit_prompt}
COMPLETE_PROMPT = """\
Given an image, its current caption, and an edit prompt, your task is to determine whether the caption fully incorporates all information from the edit prompt.
If not, you need to update the caption to include any missing information.
Image: [The image will be provided] Current Caption: {original_description} Edit Prompt: {edit_prompt}
IMPORTANT: The complete caption should ONLY describe what is ACTUALLY VISIBLE in the image. DO NOT add information from the edit prompt if those elements don't actually exist in the image.
Follow these steps:
- 1. Carefully examine the image and understand the current caption
- 2. Identify all new or modified information requested in the edit prompt
- 3. Verify if each element from the edit prompt is actually visible in the image
- 4. Check whether the current caption already contains all relevant and visible information from the edit prompt
- 5. If the caption FULLY incorporates all relevant information from the edit prompt, respond with:
- "Caption is complete. No updates needed."
- 6. If the caption is MISSING any relevant information that is ACTUALLY VISIBLE in the image, create an updated caption by:
- Preserving relevant parts of the original caption
 Naturally integrating ONLY the missing information that is actually visible in the image
- Maintaining a coherent, fluent, and accurate description
- Ensuring the updated caption accurately describes what is visible in the image
- EXCLUDING any information from the edit prompt that is not actually present in the image
Provide only the updated caption without any explanations, or confirm that no updates are needed (By Answer exactly "NO UPDATE")."""

# MED Fig. 10 (step 2: caption the edited image). {description}, {type}, {type description}
CAPTION_PROMPT = """\
Your task is generating an accurate caption for the given image, using the following information as context:
Reference description: {description} Key aspect to focus on: {type} ({type description})
Your task is to:
- 1. Carefully examine the actual image content
- 2. Note any differences between the image and the reference description, especially regarding the {type} aspects
- 3. Create an accurate caption that accurately describes ONLY what is truly visible in the image
IMPORTANT:
- Your description must be based solely on what is actually visible in the image
- Do not include details from the reference description that aren't present in the image
- Pay special attention to accurately describing the {type} elements
- Be precise and objective in your description
Please provide your accurate caption in English, beginning with "CAPTION:"."""

# MED Fig. 11 (step 3: the difference of the two captions; Qwen3-32B per §3.2, the figure's caption says
# Qwen-2.5-VL-72B). {complete_caption}, {new_caption}
DIFFERENCE_PROMPT = """\
Given these two image captions and a specific type of difference:
Caption 1: {complete_caption} Caption 2: {new_caption}
Type class:
- Object: Adding or removing entities (people, animals, food, vehicles, objects)
- Attribute: Changing visual properties (color, material, size, shape)
- Scene: Modifying backgrounds or settings
- Spatial Relation: Altering physical arrangements (right, left, on top, below, inside)
- Action Relation: Changing interactions between entities
- Part Relation: Modifying part-whole relationships (body parts, clothing, accessories)
- Counting: Adjusting quantity of entities
- Differentiation: Distinguishing objects by attributes
- Comparison: Changing relative characteristics
- Negation: Removing elements
- Universality: Applying changes to all members of a group
Identify only the most obvious differences between these captions and choose a Type class the difference belong to.
Respond with just the key differences, using one sentence and one type class Please strctly follow this format:"TYPE:XXX\\nDIFFERENCE:XXXX\""""

# MED Fig. 12 (first judge: the difference against the edit prompt). {edit_prompt}, {difference description}
JUDGE_1_PROMPT = """\
Determine if the described difference matches the edit prompt:
Edit Prompt: {edit_prompt} Described Difference: {difference description}
Assess whether the described difference correctly reflects what was requested in the edit prompt.
Answer with 1. Only "Yes" if they match. No explanation needed. 2. Only "No" if there's no obvious change. No explanation needed."""

# MED Fig. 13 (second judge: the difference against the second description, i.e. the edited image's
# caption). {second_edit_prompt}, {difference_description}; the figure's "....." elision left out.
JUDGE_2_PROMPT = """\
Your task is determine if the 'Described Difference' matches the 'Second Description':
Second Description: {second_edit_prompt} Described Difference: {difference_description}
IMPORTANT GUIDELINES FOR EVALUATION:
- "Caption 1" refers to the first image description, and "Caption 2" refers to the second image description.
- FOCUS ON MEANING, NOT EXACT WORDING: Synonyms, paraphrasing, and alternative expressions that convey the same meaning should be considered equivalent.
- ALLOW FOR VARIATION: The difference description may use different phrasing or perspective than the second description while still being correct.
- ACCEPT STRUCTURAL DIFFERENCES: Different sentence structures, word order, or narrative approaches that communicate the same content are valid.
- RECOGNIZE CONCEPTUAL MATCHES: When categories, concepts, or observations are semantically similar (even if using different terminology), treat them as matches.
- EVALUATE BASED ON CORE CHANGES: If both descriptions identify the same fundamental changes between images, even through different expressions, consider them aligned.
- BE GENEROUS IN INTERPRETATION: When in doubt, lean toward accepting descriptions that capture the essential elements, even if details vary.
Answer with 1. Only "Yes" if they match. No explanation needed. 2. Only "No" if there's no obvious change. No explanation needed."""

# MED Fig. 14 (Qwen3-32B rewrites the difference into the SFT answer). {diff description}
REWRITE_PROMPT = """\
I need your help to rewrite a description of differences between two images.
Current description (needs improvement): "{diff description}"
Please rewrite this description to focus on the VISUAL DIFFERENCES between the two images, NOT just differences in captions.
Important guidelines:
- Assume "Caption 1" refers to the first image, and "Caption 2" refers to the second image
- Your rewritten description should describe what appears in the second image compared to the first image
- Use formats like "The second image shows..." or "In the first image, ... while in the second image..."
- Focus on actual visual elements that are present or absent in each image
- Be specific about what was added, removed, or changed
- Keep your description concise but informative
Your response must follow this exact format: IMPROVED_DESCRIPTION: [Your rewritten description here]
Do not include any other text, explanations, or formatting in your response."""

# MED Fig. 16 (GPT-4o in the paper writes the benchmark's right answer); input appended by RIGHT_ANSWER_INPUT.
RIGHT_ANSWER_PROMPT = """\
You are analyzing the differences between two images described by captions. Your task is to generate a clear answer that describes how the second image differs from the first image.
Input: A difference description that compares elements between two images. Output: A precise statement that explains how the second image (Caption 2) differs from the first image (Caption 1).
Your output MUST follow this exact format:
ANSWER: [Your description of how the second image differs from the first image]
Example:
Input difference description: "The deer on the far right is grazing with his head facing toward the grass in the first caption, while in the second caption, it stands alone facing slightly to the right."
Output:
ANSWER: In the second image, the deer on the far right is standing alone facing slightly to the right, whereas in the first image, the deer was grazing with its head facing toward the grass.
Important requirements:
1. Always frame your answer to describe how the second image differs from the first image
2. Use precise language to describe the specific differences
3. Begin with "In the second image" to maintain clarity
4. Always follow the ANSWER: format exactly as shown"""

# MED Fig. 17 (GPT-4o in the paper writes three wrong answers). {difference_description}, {right_answer}
WRONG_ANSWERS_PROMPT = """\
Please create exactly 3 completely incorrect statements about the difference between two images that are similar to the correct answer but wrong in subtle ways.
Context:
- The first image (Caption 1) and second image (Caption 2) show the same scene with a specific difference
- The actual difference is: "{difference_description}'
- The correct statement that describes this difference is: "{right_answer}"
Your task:
- 1. Create exactly 3 statements that are deceptively similar to the correct answer but entirely incorrect 2. Each wrong answer should be closely related to the actual difference, but contain crucial errors
- 3. Make the wrong answers similar enough to the right answer that they could confuse someone
- 4. The statements should sound plausible and require careful attention to distinguish from the correct answer
- 5. Each wrong answer should suggest a specific difference between "the first image" and "the second image"
- 6. Use similar wording, structure, and level of detail as the correct answer
Output format:
wrong_answer1: [Your first wrong answer here] wrong_answer2: [Your second wrong answer here] wrong_answer3: [Your third wrong answer here]
Remember, your statements should be subtly wrong in ways that make them challenging to distinguish from the correct answer!"""

RIGHT_ANSWER_INPUT = '\n\nInput difference description: "{difference}"\n\nOutput:'

# MED Fig. 15: the benchmark's nine question phrasings, as printed.
QUESTIONS: tuple[str, ...] = (
    "What is the primary difference between the two images?",
    "What is the main distinction between these two images?",
    "What's the key difference between these two pictures?",
    "Can you identify the principal disparity between these two images?",
    "How do these two images primarily differ from each other?",
    "What's the most significant contrast between these two photos?",
    "What distinguishes one image from the other?",
    "What is the fundamental difference you can see between these two visuals?",
    "What's the most notable variation between these two pictures?",
)
EDIT_REQUEST_START = "Hi, This is a photo of"  # Fig. 8's required structure begins so
NO_UPDATE = "NO UPDATE"  # Fig. 9's answer for a caption that needs no update


class Unparsed(ValueError):
    """A reply that does not fit its figure's format; ``reason`` is the counted reason row."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def filter_prompt(caption: str) -> str:
    return FILTER_PROMPT.format(caption=caption)


def request_prompt(description: str) -> str:
    return REQUEST_PROMPT.format(description)


def complete_prompt(caption: str, edit_prompt: str) -> str:
    return COMPLETE_PROMPT.format(original_description=caption, edit_prompt=edit_prompt)


def caption_prompt(description: str, category: str) -> str:
    return CAPTION_PROMPT.format(**{"description": description, "type": category,
                                    "type description": CATEGORY_DESCRIPTIONS[category]})


def difference_prompt(complete_caption: str, new_caption: str) -> str:
    return DIFFERENCE_PROMPT.format(complete_caption=complete_caption, new_caption=new_caption)


def judge_1_prompt(edit_prompt: str, difference: str) -> str:
    return JUDGE_1_PROMPT.format(**{"edit_prompt": edit_prompt, "difference description": difference})


def judge_2_prompt(second_description: str, difference: str) -> str:
    return JUDGE_2_PROMPT.format(second_edit_prompt=second_description, difference_description=difference)


def rewrite_prompt(difference: str) -> str:
    return REWRITE_PROMPT.format(**{"diff description": difference})


def right_answer_prompt(difference: str) -> str:
    return RIGHT_ANSWER_PROMPT + RIGHT_ANSWER_INPUT.format(difference=difference)


def wrong_answers_prompt(difference: str, right_answer: str) -> str:
    return WRONG_ANSWERS_PROMPT.format(difference_description=difference, right_answer=right_answer)


# ------------------------------------------------------------------------------ answers

_NEWLINE = r"(?:\\n|\n)"  # a real line break, or the two characters \n the figures print
_BOLD = r"[*\s]*"


def _one_line(text: str) -> str:
    return " ".join(text.replace("\\n", " ").split()).strip().strip("\"'`[]").strip()


def _category(name: str, reason: str) -> str:
    key = _one_line(name).strip("*").strip().lower()
    for c in CATEGORIES:
        if c.lower() == key:
            return c
    raise Unparsed(reason, f"type {name.strip()[:60]!r} is none of the 11")


def parse_filter(answer: str) -> bool:
    """Fig. 7: the verdict after "Final Recommendation:" (bold or not); True only for a strict "Yes"
    (§3.1). A reply without a verdict, or echoing the template's "Yes or No", is unparseable."""
    m = re.search(r"Final Recommendation\s*:?" + _BOLD + r":?" + _BOLD + r"(Yes|No)\b(?!" + _BOLD + r"or\b)", answer)
    if not m:
        raise Unparsed("med_filter_unparseable", "no **Yes** or **No** after Final Recommendation")
    return m.group(1) == "Yes"


def parse_request(answer: str) -> tuple[str, str]:
    """Fig. 8: ``Type: <category>\\n## Prompt: <edit prompt>`` -> (category, edit prompt). The prompt must
    have the figure's structure "Hi, This is a photo of [...]. Can you [...] and output the image?"
    (its examples also say "a picture of")."""
    m = re.search(r"Type" + _BOLD + r":" + _BOLD + r"(.+?)" + _BOLD + _NEWLINE + r"+\s*#*\s*" + _BOLD
                  + r"Prompt" + _BOLD + r":" + _BOLD + r"(.+)", answer, re.S)
    if not m:
        raise Unparsed("med_request_unparseable", "no 'Type: ...' and '## Prompt: ...'")
    category = _category(m.group(1), "med_request_unknown_type")
    prompt = _one_line(re.split(_NEWLINE, m.group(2).strip())[0])
    if not re.fullmatch(r"Hi, This is a (?:photo|picture) of .+?\. Can you .+ and output the image\?", prompt):
        raise Unparsed("med_request_off_template", prompt[:200])
    return category, prompt


def parse_completion(answer: str, caption: str) -> str:
    """Fig. 9: "NO UPDATE" (or the figure's "Caption is complete. No updates needed.") keeps ``caption``;
    any other non-empty reply is the updated caption, kept whole."""
    text = _one_line(answer)
    if not text:
        raise Unparsed("med_complete_empty")
    if text.rstrip(".").upper() in (NO_UPDATE, "CAPTION IS COMPLETE. NO UPDATES NEEDED"):
        return caption
    return text


def parse_caption(answer: str) -> str:
    """Fig. 10: the text after "CAPTION:", whole (every sentence)."""
    m = re.search(r"CAPTION" + _BOLD + r":" + r"(.*)", answer, re.S)
    text = _one_line(m.group(1)) if m else ""
    if not text:
        raise Unparsed("med_caption_unparseable", "no text after CAPTION:")
    return text


def parse_difference(answer: str) -> tuple[str, str]:
    """Fig. 11: ``TYPE:<category>\\nDIFFERENCE:<sentence>`` -> (category, difference)."""
    m = re.search(r"TYPE" + _BOLD + r":" + _BOLD + r"(.+?)" + _BOLD + _NEWLINE + r"+\s*" + _BOLD
                  + r"DIFFERENCE" + _BOLD + r":(.+)", answer, re.S)
    if not m or not _one_line(m.group(2)):
        raise Unparsed("med_difference_unparseable", "no 'TYPE:...' and 'DIFFERENCE:...'")
    return _category(m.group(1), "med_difference_unknown_type"), _one_line(m.group(2))


def parse_yes_no(answer: str, stage: str) -> bool:
    """Figs. 12-13: only "Yes" or only "No" (a full stop or bold aside)."""
    text = answer.strip().strip("*\"'`. \n").strip()
    if text in ("Yes", "No"):
        return text == "Yes"
    raise Unparsed(f"{stage}_unparseable", answer.strip()[:200])


def parse_rewrite(answer: str) -> str:
    """Fig. 14: the text after "IMPROVED_DESCRIPTION:"."""
    m = re.search(r"IMPROVED_DESCRIPTION" + _BOLD + r":(.*)", answer, re.S)
    text = _one_line(m.group(1)) if m else ""
    if not text:
        raise Unparsed("med_rewrite_unparseable", "no text after IMPROVED_DESCRIPTION:")
    return text


def parse_right_answer(answer: str) -> str:
    """Fig. 16: the text after "ANSWER:"."""
    m = re.search(r"ANSWER" + _BOLD + r":(.*)", answer, re.S)
    text = _one_line(m.group(1)) if m else ""
    if not text:
        raise Unparsed("med_bench_answer_unparseable", "no text after ANSWER:")
    return text


def parse_wrong_answers(answer: str, right: str) -> list[str]:
    """Fig. 17: ``wrong_answer1: ... wrong_answer2: ... wrong_answer3: ...`` -> three distinct answers,
    none the right one."""
    found = dict(re.findall(r"wrong_answer([123])" + _BOLD + r":(.*?)(?=wrong_answer[123]" + _BOLD + r":|\Z)",
                            answer, re.S))
    texts = [_one_line(found.get(k, "")) for k in "123"]
    if not all(texts):
        raise Unparsed("med_bench_wrong_unparseable", "not three wrong_answerN: lines")
    keys = {_key(t) for t in texts}
    if len(keys) < 3 or _key(right) in keys:
        raise Unparsed("med_bench_wrong_duplicate", "wrong answers repeat each other or the right one")
    return texts


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()
