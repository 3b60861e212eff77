"""Examining a trained model: every problem of a task (or a large sample), scored and broken down.

    >>> from thinker.model import Thinker, ThinkerConfig
    >>> from thinker.tasks import make_task
    >>> task = make_task("copy", alphabet=2, length=4)
    >>> model = Thinker(ThinkerConfig(vocab_size=task.vocab_size, max_len=task.max_len, d_model=16))
    >>> exam = examine(model, task, exhaustive=True, long_size=0)
    >>> exam.mode, exam.scores.size
    ('exhaustive', 16)

Scoring runs batched forward passes without gradients; everything per problem (right or wrong, the
first wrong answer position, the least confident answer token) is computed with tensor operations,
so a million addition problems take seconds, not a Python loop over problems. The splits are the
trainer's: held-out problems (never trained on), training problems, and longer-than-training ones.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from thinker.errors import ConfigError
from thinker.model import Thinker, segment_positions
from thinker.tasks import FIRST_SYMBOL, SEP, AdditionTask, Task, _ArithmeticTask, to_digits

EXHAUSTIVE_LIMIT = 4_000_000  # problems; beyond this `examine` scores a sample
EXAM_SEED = 20231218  # the samples `examine` draws: the same problems for every model
SCAN_SLICE = 8192  # problems scored between looks for a wrong answer in `find_wrong`
CHUNK = 1024  # problems per forward pass on a CPU (measured on 2 cores: 1024 beat 512, 2048 and 16384)
GPU_CHUNK = 16384  # on a GPU: enough rows to keep it busy, a few hundred MB of activations


@dataclass
class Scores:
    """Per-problem results of one set of problems (CPU tensors, one row per problem)."""

    problems: torch.Tensor  # (N, K) raw problems
    right: torch.Tensor  # (N,) every answer token right
    first_wrong: torch.Tensor  # (N,) index of the first wrong answer token, -1 if right
    answers: torch.Tensor  # (N, A) predicted symbols (token id - FIRST_SYMBOL)
    expected: torch.Tensor  # (N, A) right symbols
    confidence: torch.Tensor  # (N,) smallest probability the model gave one of its answer tokens

    @property
    def size(self) -> int:
        return self.right.shape[0]

    def figures(self, where: torch.Tensor | None = None) -> dict[str, float | int]:
        """Exact match, token accuracy and counts over all problems or those `where` is True."""
        right, tokens = self.right, self.answers == self.expected
        if where is not None:
            right, tokens = right[where], tokens[where]
        n = right.shape[0]
        return {"problems": n, "wrong": int(n - right.sum()), "exact_match": float(right.float().mean()) if n else 0.0,
                "token_accuracy": float(tokens.float().mean()) if n else 0.0}


def score(model: Thinker, task: Task, problems: torch.Tensor, long: bool = False, steps: int | None = None,
          chunk: int | None = None, workers: int = 1, on_chunk: Callable[[int], None] | None = None,
          length: int | None = None) -> Scores:
    """Score `problems` (raw rows) in batches of `chunk` (default: CHUNK on CPU, GPU_CHUNK on GPU);
    `steps` overrides the model's thinking steps; `length`: problems of that length (`problems_of_length`).

    With `workers` > 1 (CPU), that many threads each score whole batches with single-threaded torch
    operations: on 2 cores ~1.2x faster than splitting every small operation over both.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    chunk = chunk or (CHUNK if device.type == "cpu" else GPU_CHUNK)
    starts = range(0, problems.shape[0], chunk)

    @torch.inference_mode()
    def one(start: int) -> tuple[torch.Tensor, ...]:
        batch = task.encode(problems[start:start + chunk].to(device), long=long, length=length)
        n = batch.answer_slots  # every task puts its answer slots last (after any scratch)
        expected = batch.targets[:, -n:]
        logits = model(batch.inputs, steps=steps, shared_layout=True, tail=n)
        confidence, answers = logits.float().softmax(-1).max(-1)  # (n, A)
        wrong = answers != expected
        first = torch.where(wrong.any(1), wrong.to(torch.int8).argmax(1), -1)
        if on_chunk is not None:
            on_chunk(batch.inputs.shape[0])
        return tuple(t.cpu() for t in (~wrong.any(1), first, answers - FIRST_SYMBOL, expected - FIRST_SYMBOL,
                                       confidence.min(1).values))

    try:
        if workers > 1 and device.type == "cpu":
            with _one_thread_per_op(), ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(one, starts))
        else:
            parts = [one(start) for start in starts]
    finally:
        model.train(was_training)
    right, first, answers, expected, confidence = (torch.cat(p) for p in zip(*parts)) if parts else \
        (torch.empty(0, dtype=torch.bool), torch.empty(0, dtype=torch.long), *[torch.empty(0, 0)] * 2, torch.empty(0))
    return Scores(problems.cpu(), right, first, answers.to(torch.int16), expected.to(torch.int16), confidence)


@contextlib.contextmanager
def _one_thread_per_op():
    """Single-threaded torch operations for the block (threads of our own share the cores), then back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class Exam:
    """What `examine` found: the main set (every problem, or a sample) and the longer-than-training one."""

    task: Task
    mode: str  # "exhaustive" or "sample"
    scores: Scores
    held_out: torch.Tensor  # (N,) which problems of `scores` are held out from training
    long: Scores | None
    seconds: float
    steps: int

    def figures(self) -> dict:
        """Exact match and token accuracy: overall, held-out, train and long."""
        out = {"all": self.scores.figures(), "held_out": self.scores.figures(self.held_out),
               "train": self.scores.figures(~self.held_out)}
        if self.long is not None:
            out["long"] = self.long.figures()
        return out

    def wrong(self) -> torch.Tensor:
        """Indices into `scores` of the wrong problems, in problem order."""
        return (~self.scores.right).nonzero().flatten()


def examine(model: Thinker, task: Task, *, exhaustive: bool = False, sample_size: int = 100_000,
            long_size: int = 10_000, steps: int | None = None, seed: int = EXAM_SEED, workers: int = 1,
            on_chunk: Callable[[int], None] | None = None) -> Exam:
    """Score every problem (`exhaustive`, when the task has at most EXHAUSTIVE_LIMIT) or a sample.

    A sample holds `sample_size` held-out and as many training problems, drawn with a fixed seed.
    `long_size` longer-than-training problems are always a sample (0 skips them).
    """
    start = time.perf_counter()
    exhaustive = exhaustive and task.space_size() <= EXHAUSTIVE_LIMIT
    if exhaustive:
        problems = task.problems_at(torch.arange(task.space_size()))
    else:
        g = torch.Generator().manual_seed(seed)
        problems = torch.cat([task.problems(sample_size, g, "eval"), task.problems(sample_size, g, "train")])
    scores = score(model, task, problems, steps=steps, workers=workers, on_chunk=on_chunk)
    long = None
    if long_size:
        g = torch.Generator().manual_seed(seed + 1)
        long = score(model, task, task.problems(long_size, g, "long"), long=True, steps=steps, workers=workers,
                     on_chunk=on_chunk)
    return Exam(task, "exhaustive" if exhaustive else "sample", scores, task.is_held_out(problems), long,
                time.perf_counter() - start, steps or model.cfg.steps)


def score_length(model: Thinker, task: Task, length: int, steps: int | str | None = None, size: int = 2048,
                 seed: int = EXAM_SEED, workers: int = 1) -> Scores:
    """`size` random problems of `length` (symbols, or digits of every operand) scored after `steps`
    thinking steps: a number, None (as trained) or "auto" (`auto_steps`). The same problems for every
    model and step count. ConfigError (a ProblemError) if the task cannot make problems that long or the
    model has no positions for them (train with a larger `max_positions`)."""
    problems = task.problems_of_length(size, torch.Generator().manual_seed(seed + length), length)
    needed = positions_for(task, length)
    if needed > model.cfg.max_len:
        raise ConfigError(f"{task.name} problems of length {length} need positions up to {needed - 1}; the model "
                          f"has 0..{model.cfg.max_len - 1} (train with a larger --max-positions)")
    steps = auto_steps(model, task, length) if steps == "auto" else steps
    return score(model, task, problems, steps=steps, workers=workers, length=length)


def positions_for(task: Task, length: int) -> int:
    """Positions within a segment that problems of `length` take (separators included); ProblemError if
    the task cannot make problems that long."""
    problems = task.problems_of_length(1, torch.Generator().manual_seed(0), length)
    return int(segment_positions(task.encode(problems, length=length).inputs, SEP)[1].max()) + 1


def auto_steps(model: Thinker, task: Task, length: int) -> int:
    """Thinking steps in proportion to the length: the trained steps times length / training length,
    rounded up, never fewer than trained."""
    return max(model.cfg.steps, math.ceil(model.cfg.steps * length / task.train_length))


def find_wrong(model: Thinker, task: Task, workers: int = 1, steps: int | None = None,
               suspects: torch.Tensor | None = None) -> torch.Tensor:
    """Problems of the whole task the model gets wrong: empty if it gets every one right.

    `suspects` (problems that were wrong before) are scored first, then every problem, hardest
    first, in slices of SCAN_SLICE; the scan stops at the first slice with a wrong answer and returns
    that slice's wrong problems. A problem still wrong from an earlier check fails the scan in its
    first slice; a model right on every problem costs one full exhaustive pass.
    """
    problems = task.problems_at(torch.arange(task.space_size()))
    problems = problems[hard_first(task, problems)]
    if suspects is not None and suspects.numel():
        problems = torch.cat([suspects, problems])
    for start in range(0, problems.shape[0], SCAN_SLICE):
        scores = score(model, task, problems[start:start + SCAN_SLICE], steps=steps, workers=workers)
        if not bool(scores.right.all()):
            return scores.problems[~scores.right]
    return problems[:0]


def hard_first(task: Task, problems: torch.Tensor) -> torch.Tensor:
    """An order of `problems` that puts the likely failures first; other tasks than addition keep theirs.

    Addition: the fewest operand digits first (uniform operands 0..1000 make two-digit ones rare in
    training: the last wrong pairs of trained models were mostly those, like 78 + 88 or 0 + f), then
    the longest carry chains.
    """
    if not isinstance(task, AdditionTask):
        return torch.arange(problems.shape[0])
    chains = carry_chains(problems[:, 0], problems[:, 1], task.base)
    digits = sum(_lengths(problems[:, i], task.base) for i in (0, 1))
    return torch.sort(digits * 64 - chains, stable=True).indices


def exam_size(task: Task, exhaustive: bool, sample_size: int, long_size: int) -> int:
    """Problems `examine` will score with these settings (for a progress bar)."""
    main = task.space_size() if exhaustive and task.space_size() <= EXHAUSTIVE_LIMIT else 2 * sample_size
    return main + long_size


# -- breakdowns -------------------------------------------------------------------------------------
def breakdowns(exam: Exam) -> dict[str, list[dict]]:
    """Where the wrong answers are: rows of {label, problems, wrong, exact_match} per breakdown.

    Every task: the position of the first wrong answer token (for numbers, digit 0 is the least
    significant). Arithmetic: the operands' lengths in digits; addition: the longest carry chain
    (the most consecutive digit positions that carry into the next one).
    """
    task, scores = exam.task, exam.scores
    first = scores.first_wrong[~scores.right]
    n_wrong = max(first.shape[0], 1)
    unit = "digit" if isinstance(task, _ArithmeticTask) else "position"
    out = {"first wrong answer position": [
        {"label": f"{unit} {i}", "wrong": int(count), "share_of_wrong": int(count) / n_wrong}
        for i, count in enumerate(torch.bincount(first.long(), minlength=scores.answers.shape[1]).tolist())
        if count]}
    if isinstance(task, _ArithmeticTask):
        a, b = (_lengths(scores.problems[:, i], task.base) for i in (0, 1))
        out["operand digits"] = _group(a * 1000 + b, scores.right, lambda k: f"{k // 1000} and {k % 1000}")
    if isinstance(task, AdditionTask):
        chains = carry_chains(scores.problems[:, 0], scores.problems[:, 1], task.base)
        out["longest carry chain"] = _group(chains, scores.right, str)
    return out


def carry_chains(a: torch.Tensor, b: torch.Tensor, base: int) -> torch.Tensor:
    """The longest run of consecutive digit positions that carry, for each a + b.

    >>> carry_chains(torch.tensor([0x1, 0xff, 0x12]), torch.tensor([0xf, 0x1, 0x3]), 16).tolist()
    [1, 2, 0]
    """
    width = max(1, int(torch.maximum(a, b).max()).bit_length())  # enough digits in any base >= 2
    da, db = to_digits(a, base, width), to_digits(b, base, width)
    carry = torch.zeros_like(a)
    run = torch.zeros_like(a)
    longest = torch.zeros_like(a)
    for i in range(width):
        carry = (da[:, i] + db[:, i] + carry) >= base
        run = torch.where(carry, run + 1, 0)
        longest = torch.maximum(longest, run)
        carry = carry.long()
    return longest


def _lengths(values: torch.Tensor, base: int) -> torch.Tensor:
    length = torch.ones_like(values)
    power = base
    while bool((values >= power).any()):
        length += (values >= power).long()
        power *= base
    return length


def _group(keys: torch.Tensor, right: torch.Tensor, label: Callable[[int], str]) -> list[dict]:
    """Rows of problems, wrong and exact match per distinct key, in key order."""
    values, inverse, counts = torch.unique(keys, return_inverse=True, return_counts=True)
    wrong = torch.bincount(inverse, weights=(~right).double(), minlength=values.shape[0]).long()
    return [{"label": label(k), "problems": n, "wrong": w, "exact_match": 1.0 - w / n}
            for k, n, w in zip(values.tolist(), counts.tolist(), wrong.tolist())]
