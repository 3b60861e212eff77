"""What every task shares: the `Task` base class, the `Batch` it encodes problems to, the token ids and
the layout of a problem as token segments (`layout`), and numbers as digits (`to_digits`).

    >>> batch = layout([torch.tensor([[3, 4]])], torch.tensor([[5, 6]]))  # one operand, two answer tokens
    >>> batch.inputs.tolist(), batch.targets.tolist()
    ([[3, 4, 1, 2, 2]], [[0, 0, 0, 5, 6]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from thinker.errors import ConfigError

PAD, SEP, ANS = 0, 1, 2
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"  # digit symbols of numbers in bases up to 36
FIRST_SYMBOL = 3  # token id of symbol 0
SPLITS = ("train", "eval", "long")
_MASK31 = 0x7FFFFFFF


class ProblemError(ConfigError):
    """A problem written in a task's notation that the task cannot read (bad symbol, length, range)."""


@dataclass
class Batch:
    inputs: torch.Tensor  # (B, T) token ids
    targets: torch.Tensor  # (B, T) answer ids at answer slots, PAD elsewhere
    mask: torch.Tensor  # (B, T) True at answer slots
    answers: int = 0  # answer slots per problem: the last `answers` tokens of every row
    scored: int = 0  # of those, the last `scored` are the answer proper (0: all); the rest are scratch

    @property
    def answer_slots(self) -> int:
        """How many of the last tokens hold the answer that exact match scores (scratch excluded)."""
        return self.scored or self.answers

    def __len__(self) -> int:
        return self.inputs.shape[0]


def _hash_rows(values: torch.Tensor) -> torch.Tensor:
    """A 31-bit hash per row of a (N, K) int64 tensor; products stay below 2**62, no overflow."""
    h = torch.full(values.shape[:1], 0x1234567, dtype=torch.int64, device=values.device)
    for column in values.unbind(1):
        h = (h * 1000003 + column) & _MASK31
        h = ((h >> 16) ^ h) * 0x45D9F3B & _MASK31
    h = ((h >> 16) ^ h) * 0x45D9F3B & _MASK31
    return (h >> 16) ^ h


def to_digits(values: torch.Tensor, base: int, width: int) -> torch.Tensor:
    """Digits of non-negative integers, least significant first: (N,) -> (N, width).

    >>> to_digits(torch.tensor([0x3e8]), 16, 4).tolist()
    [[8, 14, 3, 0]]
    """
    powers = base ** torch.arange(width, device=values.device)
    return values.unsqueeze(1) // powers % base


def n_digits(value: int, base: int) -> int:
    """Digits needed to write `value` in `base` (at least one)."""
    digits = 1
    while value >= base:
        value //= base
        digits += 1
    return digits


class Task:
    """Base class: subclasses draw raw problems and encode them as token batches."""

    name: ClassVar[str]
    description: ClassVar[str]
    # Training settings this task needs other than the general defaults (flat TrainConfig fields);
    # `thinker train`, sweeps (under their space's own values) and the benchmarks all start from them.
    train_defaults: ClassVar[dict] = {}

    def __init__(self, holdout: float = 0.1) -> None:
        if not 0.0 < holdout < 1.0:
            raise ConfigError(f"holdout must be in (0, 1), got {holdout}")
        self.holdout = holdout

    # -- what subclasses provide ------------------------------------------------------------
    vocab_size: int
    max_len: int  # longest segment, separator included, over every split
    train_length: int  # how long training problems are: symbols of a sequence, digits of an operand

    def draw(self, n: int, generator: torch.Generator, long: bool) -> torch.Tensor:
        """Raw problems, one per row, as an int64 tensor on the generator's device."""
        raise NotImplementedError

    def encode(self, problems: torch.Tensor, long: bool = False, length: int | None = None) -> Batch:
        """A batch from raw problems: of training length, longer ones (`long`) or those of `length`."""
        raise NotImplementedError

    def problems_of_length(self, n: int, generator: torch.Generator, length: int) -> torch.Tensor:
        """`n` random problems of `length` (symbols, or digits of every operand; `train_length` is
        training's); encode them with `encode(problems, length=length)`. ProblemError if the task cannot
        make problems that long."""
        raise NotImplementedError

    # -- shared machinery -------------------------------------------------------------------
    def is_held_out(self, problems: torch.Tensor) -> torch.Tensor:
        """True for problems reserved for evaluation (a fixed hash-based split)."""
        return _hash_rows(problems) % 100_000 < int(self.holdout * 100_000)

    def sample(self, batch_size: int, generator: torch.Generator, split: str = "train",
               fixed_shape: bool = False) -> Batch:
        """A batch on the generator's device: training problems, held-out ones, or longer ones.

        `fixed_shape=True` draws without a data-dependent shape, so without a host synchronisation:
        what a GPU step and a captured CUDA graph need. The default keeps the original stream of
        problems (and so every CPU figure measured with it).
        """
        return self.encode(self.problems(batch_size, generator, split, fixed_shape), long=split == "long")

    def problems(self, n: int, generator: torch.Generator, split: str = "train",
                 fixed_shape: bool = False) -> torch.Tensor:
        """`n` raw problems of one split (what `sample` encodes), one per row."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split == "long":
            return self.draw(n, generator, long=True)
        keep_held_out = split == "eval"
        if fixed_shape:
            return self._draw_fixed(n, generator, keep_held_out)
        chunks, have = [], 0
        for _ in range(1000):
            problems = self.draw(n, generator, long=False)
            problems = problems[self.is_held_out(problems) == keep_held_out]
            chunks.append(problems)
            have += problems.shape[0]
            if have >= n:
                return torch.cat(chunks)[:n]
        raise ConfigError(f"{self.name}: could not draw {split} problems; is the problem space too small?")

    def _draw_fixed(self, batch_size: int, generator: torch.Generator, keep_held_out: bool) -> torch.Tensor:
        """`batch_size` problems of one split, picked from twice as many candidates as the split's share
        needs (plus 64), all on the device.

        A stable sort puts the wanted candidates first, in the order drawn. For training batches (90%
        of problems) fewer wanted candidates than `batch_size` has a probability below 1e-60; even
        then no problem of the other split is used: the shortfall repeats the first wanted one.
        """
        share = self.holdout if keep_held_out else 1.0 - self.holdout
        problems = self.draw(int(2 * batch_size / share) + 64, generator, long=False)
        wanted = self.is_held_out(problems) == keep_held_out  # (n,)
        order = torch.sort((~wanted).to(torch.uint8), stable=True).indices[:batch_size]  # wanted first
        chosen = problems[order]
        return torch.where(wanted[order, None], chosen, chosen[:1])

    # -- every problem, and the task's own notation (what `thinker eval` prints, `predict` reads) --
    def space_size(self) -> int:
        """How many distinct training-length problems there are."""
        raise NotImplementedError

    def problems_at(self, index: torch.Tensor) -> torch.Tensor:
        """Problem number `index` (0..space_size-1) of the training-length problems, one per row."""
        raise NotImplementedError

    def parse(self, text: str) -> tuple[list[int], bool]:
        """A problem row from its notation, and whether it is longer than training; ProblemError if bad."""
        raise NotImplementedError

    def show(self, problem: list[int]) -> str:
        """A problem in the task's notation, as `parse` reads it."""
        raise NotImplementedError

    def show_answer(self, symbols: list[int]) -> str:
        """An answer (symbol ids, token order; anything outside the alphabet shows as ?)."""
        raise NotImplementedError

    def reading_order(self, values: list) -> list:
        """Per-answer-token values (confidences, say) in the order `show_answer` writes the tokens."""
        return list(values)

    def options(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def layout(operands: list[torch.Tensor], answer: torch.Tensor, scratch: list[torch.Tensor] = ()) -> Batch:
    """Operands each closed by SEP, then one ANS slot per answer token.

    `scratch`: intermediate results the model is trained to write too, each in a segment of ANS slots
    closed by SEP between the operands and the answer; they are trained on, never scored.
    """
    n = answer.shape[0]
    sep = torch.full((n, 1), SEP, dtype=torch.long, device=answer.device)
    prompt = torch.cat([p for operand in operands for p in (operand, sep)], dim=1)
    work = torch.cat([p for segment in scratch for p in (segment, sep)] + [answer], dim=1)
    inputs = torch.cat([prompt, torch.where(work == SEP, SEP, ANS)], dim=1)
    targets = torch.cat([torch.full_like(prompt, PAD), torch.where(work == SEP, PAD, work)], dim=1)
    return Batch(inputs, targets, targets != PAD, work.shape[1], answer.shape[1] if scratch else 0)
