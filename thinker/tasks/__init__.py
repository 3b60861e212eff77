"""Synthetic algorithmic tasks, generated on the target device from a seeded `torch.Generator`.

    >>> import torch
    >>> task = TASKS["addition"]()
    >>> g = torch.Generator().manual_seed(0)
    >>> batch = task.sample(4, g)
    >>> batch.inputs.shape == batch.targets.shape == batch.mask.shape
    True

Every task lays a problem out as segments closed by a separator (``SEP``): the operands, then one
answer slot (``ANS``) per answer token. Numbers are written least significant digit first so that
digits of equal significance share a position within their segments (see `thinker.model`). Targets
hold the answer at the answer slots and ``PAD`` elsewhere; ``mask`` marks the answer slots.

A fixed share of all problems (`holdout`, chosen by a hash of the problem, so the same everywhere)
is reserved for evaluation and never drawn for training; ``split="long"`` draws longer problems than
training ever shows (length generalisation).

A file per task family: `base` (the `Task` base class, `Batch` and the token layout), `sequence`
(copy, flip, sort, roll) and `arithmetic` (addition, multiplication, in their number notation); the
registry, in the order `thinker tasks` lists it, is here.
"""

from __future__ import annotations

import inspect

from thinker.errors import ConfigError
from thinker.parsing import check_type
from thinker.tasks.arithmetic import AdditionTask, MultiplyTask, _ArithmeticTask
from thinker.tasks.base import (
    ANS,
    DIGITS,
    FIRST_SYMBOL,
    PAD,
    SEP,
    SPLITS,
    Batch,
    ProblemError,
    Task,
    layout,
    n_digits,
    to_digits,
)
from thinker.tasks.sequence import CopyTask, FlipTask, RollTask, SortTask, _SequenceTask

__all__ = ["ANS", "DIGITS", "FIRST_SYMBOL", "PAD", "SEP", "SPLITS", "TASKS", "AdditionTask", "Batch", "CopyTask",
           "FlipTask", "MultiplyTask", "ProblemError", "RollTask", "SortTask", "Task", "_ArithmeticTask",
           "_SequenceTask", "layout", "make_task", "n_digits", "to_digits"]

TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (CopyTask, FlipTask, RollTask, SortTask, AdditionTask, MultiplyTask)
}


def make_task(name: str, **options) -> Task:
    """Build a task by registry name; unknown names and bad options raise ConfigError (a ValueError)."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose from: {', '.join(TASKS)}")
    parameters = {k: p for k, p in inspect.signature(TASKS[name].__init__).parameters.items() if k != "self"}
    unknown = [key for key in options if key not in parameters]
    if unknown:
        raise ConfigError(f"{name}: unknown option(s) {', '.join(unknown)}; it takes {', '.join(parameters)}")
    for key, value in options.items():
        check_type(f"{name} option {key}", value, parameters[key].annotation)
    try:
        return TASKS[name](**options)
    except TypeError as e:  # an option the task does not take
        raise ConfigError(f"{name}: {e}") from None
