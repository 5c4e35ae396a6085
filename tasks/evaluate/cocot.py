"""CoCoT (Contrastive Chain-of-Thought) prompting for evaluation, as Img-Diff evaluates with it (supplementary §12).

Img-Diff §12: the model is first asked "Please identify the similarities and differences between these
two images" (``COCOT_PROMPT``, verbatim, in ``pairsmith.tasks.imgdiff.prompts``), "and requiring the
MLLM to pinpoint the differences before it answers the final VQA question. The differences identified
are then used as context-enhanced text to support its own response" (Table 11: MMVP with and without
CoCoT). So an evaluation with ``prompting: cocot`` makes two requests per sample with the same images:
the instruction alone, then the sample's question preceded by the instruction and the model's own
answer to it (``COCOT_CONTEXT``; how the context is laid out is not printed: pairsmith's wording). The
first answer is stored with the prediction (``eval_predictions.context``); a thinking model's first
answer is cut to what follows ``</think>``.
"""

from __future__ import annotations

from typing import Literal

from pairsmith.tasks.answers.answer_text import final_answer
from pairsmith.models.adapters.vlm_chat import VlmRequest
from pairsmith.tasks.imgdiff.prompts import COCOT_PROMPT

Prompting = Literal["direct", "cocot"]
# pairsmith's layout of the second request (Img-Diff §12 does not print it): the first turn replayed as context.
COCOT_CONTEXT = "{instruction}.\n{differences}\n\n{question}"


def cocot_first(request: VlmRequest) -> VlmRequest:
    """The first request: the sample's images with CoCoT's instruction alone."""
    return VlmRequest(request.images, COCOT_PROMPT)


def cocot_context(answer: str) -> str:
    """The model's first answer as context: after ``</think>`` if it thought, whitespace collapsed."""
    final = final_answer(answer)
    return " ".join((final if final is not None else answer).split())


def cocot_second(request: VlmRequest, differences: str) -> VlmRequest:
    """The second request: the same images, the instruction and the model's answer, then the question."""
    return VlmRequest(request.images, COCOT_CONTEXT.format(instruction=COCOT_PROMPT, differences=differences,
                                                           question=request.prompt))
