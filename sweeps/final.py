"""The score that ranks trials at the target, and the check of the winner: many problems, counted and bounded.

    >>> Score(exact_match=0.999, problems=100_000, wrong=100, exhaustive=False).describe()
    '0.99900 on 100,000 held-out problems (95% 0.99878-0.99918)'
    >>> Score(exact_match=1.0, problems=1_002_001, wrong=0, exhaustive=True).describe()
    '1.00000 on all 1,002,001 problems'
    >>> tie_broken(Score(1.0, 100_000, 0, False), samples=40_960, budget=150_000) < 1.0
    True

The 2,048 held-out problems a trial is evaluated on while it trains (what the pruner compares) cannot
tell 99.9% from 99.99%: a score of 1.0 there only says the error rate is probably below ~0.15%. A
trial that reaches its target is therefore scored once more at its end (`final_score`): on every
problem of the task where that is affordable (on a GPU up to `EXHAUSTIVE_LIMIT` problems, on a CPU up
to `CPU_EXHAUSTIVE`), else on a fixed set of `FINAL_SAMPLE` held-out problems (all of them when the
task has fewer), the same for every trial. That score is its objective value; trials that tie on it
are told apart by the samples they took to the target (`tie_broken`). At the end of a sweep the best
trial is scored on every problem (`verify`, tasks up to `EXHAUSTIVE_LIMIT`), so the sweep says
whether its winner is right on all of them.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

from thinker.exam import EXHAUSTIVE_LIMIT, score
from thinker.model import Thinker
from thinker.tasks import Task

FINAL_SAMPLE = 100_000  # held-out problems a trial at the target is scored on, where not on every problem
CPU_EXHAUSTIVE = 200_000  # on a CPU, tasks with at most this many problems are scored whole instead
FINAL_SEED = 20240611  # the fixed sample: the same problems for every trial of every sweep
Z95 = 1.959963984540054


def wilson(right: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a proportion: `right` successes out of `n`.

    >>> [round(x, 5) for x in wilson(2048, 2048)]
    [0.99813, 1.0]
    >>> wilson(0, 0)
    (0.0, 1.0)
    """
    if n <= 0:
        return 0.0, 1.0
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Score:
    """Exact match on `problems` problems: every problem of the task (`exhaustive`) or held-out ones."""

    exact_match: float
    problems: int
    wrong: int
    exhaustive: bool
    seconds: float = 0.0

    def interval(self) -> tuple[float, float] | None:
        """The 95% Wilson interval of the task's exact match; None when every problem was scored."""
        return None if self.exhaustive else wilson(self.problems - self.wrong, self.problems)

    def describe(self) -> str:
        """'0.99952 on 100,481 held-out problems (95% 0.99938-0.99963)', or '... on all N problems'."""
        if self.exhaustive:
            return f"{self.exact_match:.5f} on all {self.problems:,} problems"
        low, high = self.interval()
        return f"{self.exact_match:.5f} on {self.problems:,} held-out problems (95% {low:.5f}-{high:.5f})"

    def to_dict(self) -> dict:
        return asdict(self)


def affordable_exhaustive(task: Task, device: torch.device) -> bool:
    """Whether a trial's final score covers every problem on this device (else a held-out sample)."""
    return task.space_size() <= (EXHAUSTIVE_LIMIT if device.type == "cuda" else CPU_EXHAUSTIVE)


def final_problems(task: Task, exhaustive: bool, size: int | None = None) -> torch.Tensor:
    """Every problem, or `size` held-out ones drawn without replacement with a fixed seed (all held-out
    problems when there are fewer); a task too large to enumerate draws them at random (its space
    makes repeats negligible)."""
    g, size = torch.Generator().manual_seed(FINAL_SEED), size or FINAL_SAMPLE
    if task.space_size() > EXHAUSTIVE_LIMIT:
        return task.problems(size, g, "eval")
    problems = task.problems_at(torch.arange(task.space_size()))
    if exhaustive:
        return problems
    held_out = problems[task.is_held_out(problems)]
    if held_out.shape[0] <= size:
        return held_out
    return held_out[torch.randperm(held_out.shape[0], generator=g)[:size]].sort(0).values


def final_score(model: Thinker, task: Task, exhaustive: bool, workers: int = 1) -> Score:
    """Exact match of `model` on every problem (`exhaustive`) or on the fixed held-out sample."""
    start = time.perf_counter()
    scores = score(model, task, final_problems(task, exhaustive), workers=workers)
    n, right = scores.size, int(scores.right.sum())
    return Score(right / n if n else 0.0, n, n - right, exhaustive, round(time.perf_counter() - start, 2))


def tie_broken(final: Score, samples: int, budget: int) -> float:
    """The objective value of a trial at the target: its final exact match, less under half a problem's
    worth in proportion to the samples it took to the target, so that of two trials with as many
    problems wrong the faster one is the better, and one problem more right always outranks speed."""
    return final.exact_match - min(samples, budget) / max(budget, 1) / (2.0 * max(final.problems, 1))


def verdict(task: str, ref: str, verified: dict) -> str:
    """What the end-of-sweep check found, in a line ("right on all N problems" or where to look).

    >>> verdict("addition", "addition:44", {"problems": 1002001, "wrong": 408})
    'wrong on 408 of 1,002,001 pairs: see `thinker eval addition:44 --exhaustive`'
    """
    noun = "pairs" if task in ("addition", "multiply") else "problems"
    if not verified["wrong"]:
        return f"right on all {verified['problems']:,} {noun}"
    return f"wrong on {verified['wrong']:,} of {verified['problems']:,} {noun}: see `thinker eval {ref} --exhaustive`"
