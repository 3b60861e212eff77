"""Held-out evaluation: loss, token accuracy and exact match over fixed problem sets.

    >>> from thinker.model import Thinker, ThinkerConfig
    >>> from thinker.tasks import make_task
    >>> task = make_task("copy", alphabet=5, length=4)
    >>> held_out, long = eval_sets(task, 64, 16, torch.device("cpu"))
    >>> model = Thinker(ThinkerConfig(vocab_size=task.vocab_size, max_len=task.max_len, d_model=16))
    >>> sorted(evaluate(model, [held_out]))
    ['exact_match', 'loss', 'token_accuracy']
"""

from __future__ import annotations

import contextlib

import torch

from thinker.model import Thinker
from thinker.tasks import Batch, Task
from thinker.training.step import masked_loss

EVAL_SEED = 20231218  # one fixed held-out set for every run, so runs compare on the same problems


@torch.no_grad()
def evaluate(model: Thinker, batches: list[Batch], chunk: int = 1024, autocast=None,
             steps: int | None = None) -> dict[str, float]:
    """Loss, token accuracy and exact match (every answer token right) over fixed batches, after `steps`
    thinking steps (None: as configured)."""
    was_training = model.training
    model.eval()
    loss_sum, tokens, right_tokens, exact, samples = 0.0, 0, 0, 0, 0
    for batch in batches:
        for i in range(0, len(batch), chunk):
            inputs = batch.inputs[i:i + chunk]
            # every task puts its answer slots last: score those only (not the scratch before them)
            n = batch.answer_slots
            targets, mask = batch.targets[i:i + chunk, -n:], batch.mask[i:i + chunk, -n:]
            with autocast or contextlib.nullcontext():
                logits = model(inputs, steps=steps, shared_layout=True, tail=n)
            n_answer = mask.sum()
            loss_sum += (masked_loss(logits, targets) * n_answer).item()  # .item(): sync point
            right = (logits.argmax(-1) == targets) & mask
            tokens += int(n_answer)
            right_tokens += int(right.sum())
            exact += int((right.sum(1) == mask.sum(1)).sum())
            samples += inputs.shape[0]
    model.train(was_training)
    return {"loss": loss_sum / max(tokens, 1), "token_accuracy": right_tokens / max(tokens, 1),
            "exact_match": exact / max(samples, 1)}


def eval_sets(task: Task, eval_size: int, long_eval_size: int, device: torch.device,
              length: int = 0) -> tuple[Batch, Batch | None]:
    """The fixed held-out set and the longer-than-training set (problems of `length`, else the task's
    longer split), the same for every seed."""
    g = torch.Generator(device).manual_seed(EVAL_SEED)
    held_out = task.sample(eval_size, g, split="eval")
    if not long_eval_size:
        return held_out, None
    if length:
        return held_out, task.encode(task.problems_of_length(long_eval_size, g, length), length=length)
    return held_out, task.sample(long_eval_size, g, split="long")
