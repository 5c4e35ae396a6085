"""The DiG reward in the shape TRL's GRPOTrainer calls: a batch of completions in, one float each out.

GRPOTrainer passes every extra dataset column as a keyword argument, so the true boxes arrive as
``gt_boxes`` (one list per completion, repeated for each rollout), and conversational completions
arrive as chat messages. The reward's parts (F1, mean IoU, format) are logged next to TRL's own
metrics, so a run card shows *why* the reward moved, not only that it did.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import fmean

from pairsmith.tasks.answers.grounding_reward import DigRewardConfig, parse_boxes, reward_from_score, score_grounding


def completion_text(completion) -> str:
    """Plain text of a completion: a string, or the assistant messages TRL passes for chat prompts."""
    if isinstance(completion, str):
        return completion
    parts: list[str] = []
    for message in completion or []:
        content = message.get("content") if isinstance(message, dict) else message
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [block.get("text") or "" for block in content if isinstance(block, dict)]
    return "".join(parts)


class DigReward:
    """Callable reward function for ``GRPOTrainer(reward_funcs=[DigReward(config)])``."""

    __name__ = "dig_reward"  # TRL names the logged columns after it: rewards/dig_reward/mean

    def __init__(self, config: DigRewardConfig | None = None):
        self.config = config or DigRewardConfig()

    def __call__(
        self, completions: list, gt_boxes: list[list[list[float]]],
        log_metric: Callable[[str, float], None] | None = None, **_: object,
    ) -> list[float]:
        if len(completions) != len(gt_boxes):
            raise ValueError(f"dig_reward: {len(completions)} completions for {len(gt_boxes)} gt_boxes rows")
        c = self.config
        scores = [score_grounding(parse_boxes(completion_text(x)), gt, c.iou_threshold)
                  for x, gt in zip(completions, gt_boxes)]
        if log_metric is not None and scores:
            log_metric("dig/f1", fmean(s.f1 for s in scores))
            log_metric("dig/mean_iou", fmean(s.mean_iou for s in scores))
            log_metric("dig/format", fmean(float(s.format_ok) for s in scores))
        return [reward_from_score(s, c.alpha, c.lambda_f1, c.lambda_iou) for s in scores]
