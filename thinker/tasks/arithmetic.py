"""Arithmetic tasks: two numbers in a base, digits least significant first (addition, multiplication), and
their notation: `parse` reads ``3e8 + 2f``, `show` writes it back, `show_answer` writes the answer.

    >>> task = AdditionTask()
    >>> task.parse("3e8 + 2f"), task.show([1000, 47])
    (([1000, 47], False), '3e8 + 2f')
"""

from __future__ import annotations

from typing import ClassVar

import torch

from thinker.errors import ConfigError
from thinker.tasks.base import DIGITS, FIRST_SYMBOL, Batch, ProblemError, Task, layout, n_digits, to_digits


class _ArithmeticTask(Task):
    """Two numbers in `base`, each 0..max_operand, digits least significant first."""

    operator: ClassVar[str]

    def __init__(self, base: int = 16, max_operand: int = 1000, holdout: float = 0.1, length: int = 0,
                 pad: int = 0) -> None:
        super().__init__(holdout)
        if base < 2:
            raise ConfigError(f"base must be at least 2, got {base}")
        if length < 0 or max_operand < 1:
            raise ConfigError(f"length must not be negative and max_operand must be positive, got {length} and "
                              f"{max_operand}")
        self.base = base
        # `length` (the training length): operands of up to that many digits, every one of them possible
        self.max_operand = base ** length - 1 if length else max_operand
        self.digits = self.train_length = n_digits(self.max_operand, base)
        if pad and pad < self.digits:
            raise ConfigError(f"pad must be 0 or at least the operands' {self.digits} digits, got {pad}")
        # `pad`: every training batch writes its operands in a random width digits..pad (leading zeros), so the
        # model meets wider numbers than its operands; and every problem, of any split or length, writes its
        # operands as wide as the answer, so that each answer digit has digits of the operands beside it
        self.pad = pad
        self.vocab_size = FIRST_SYMBOL + base
        self.max_len = max(self.answer_digits(self.digits + 1), self.answer_digits(pad)) + 1

    def answer_digits(self, operand_digits: int) -> int:
        raise NotImplementedError

    def largest(self, operand_digits: int) -> int:
        """The largest operand written in that many digits: `max_operand` at the training length (unless
        padded: then every answer is as wide as any of its width could need)."""
        return self.max_operand if operand_digits == self.digits and not self.pad else self.base ** operand_digits - 1

    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def draw(self, n: int, generator: torch.Generator, long: bool) -> torch.Tensor:
        device = generator.device
        if long:  # exactly one digit more than any training operand
            low, high = self.base ** self.digits, self.base ** (self.digits + 1)
        else:
            low, high = 0, self.max_operand + 1
        return torch.randint(low, high, (n, 2), generator=generator, device=device)

    def is_held_out(self, problems: torch.Tensor) -> torch.Tensor:
        # a + b and b + a are one problem: hold both out or neither
        return super().is_held_out(problems.sort(dim=1).values)

    def sample(self, batch_size: int, generator: torch.Generator, split: str = "train",
               fixed_shape: bool = False) -> Batch:
        if split != "train" or not self.pad:
            return super().sample(batch_size, generator, split, fixed_shape)
        problems = self.problems(batch_size, generator, split, fixed_shape)
        # a fixed shape (GPU steps, CUDA graphs) takes the widest; else one width per batch from the CPU
        width = self.pad if fixed_shape else int(torch.randint(self.digits, self.pad + 1, (1,), generator=generator))
        return self.encode(problems, length=width)

    def problems_of_length(self, n: int, generator: torch.Generator, length: int) -> torch.Tensor:
        if not 1 <= length <= self.longest():
            raise ProblemError(f"{self.name} makes operands of 1..{self.longest()} digits, not {length}")
        return torch.randint(self.base ** (length - 1) if length > 1 else 0, self.base ** length, (n, 2),
                             generator=generator, device=generator.device)

    def longest(self) -> int:
        """The most operand digits whose answer still fits in int64."""
        length = 1
        while self.combine(self.base ** (length + 1) - 1, self.base ** (length + 1) - 1) < 2 ** 63:
            length += 1
        return length

    def encode(self, problems: torch.Tensor, long: bool = False, length: int | None = None) -> Batch:
        a, b = problems[:, 0], problems[:, 1]
        width = length or self.digits + long
        # a chosen length has every operand of that many digits: the answer has room for the largest
        out = self.answer_digits(width) if length is None else n_digits(self.combine(*[self.base ** width - 1] * 2),
                                                                        self.base)
        answer = to_digits(self.combine(a, b), self.base, out)
        operands = [to_digits(v, self.base, answer.shape[1] if self.pad else width) + FIRST_SYMBOL for v in (a, b)]
        return layout(operands, answer + FIRST_SYMBOL, [s + FIRST_SYMBOL for s in self.scratch_digits(a, b, width)])

    def scratch_digits(self, a: torch.Tensor, b: torch.Tensor, width: int) -> list[torch.Tensor]:
        """Intermediate results written before the answer (none by default)."""
        return []

    def space_size(self) -> int:
        return (self.max_operand + 1) ** 2

    def problems_at(self, index: torch.Tensor) -> torch.Tensor:
        return torch.stack([index // (self.max_operand + 1), index % (self.max_operand + 1)], dim=1)

    def parse(self, text: str) -> tuple[list[int], bool]:
        parts = text.replace("×", "*").split(self.operator)
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise ProblemError(f"{text.strip()!r}: write a problem as A {self.operator} B, e.g. "
                               f"'3e8 {self.operator} 2f'")
        longest = self.base ** (self.digits + 1) - 1
        values = []
        for part in parts:
            word = part.strip().lower()
            bad = [c for c in word if c not in DIGITS[:self.base]]
            if bad or self.base > len(DIGITS):
                raise ProblemError(f"{text.strip()!r}: {bad[0] if bad else word!r} is not a base-{self.base} digit")
            value = int(word, self.base)
            if value > longest:
                raise ProblemError(f"{text.strip()!r}: {word} is out of range; operands are "
                                   f"0..{self.number(self.max_operand)} (up to {self.number(longest)} for a "
                                   "longer-than-training problem)")
            values.append(value)
        return values, max(values) > self.max_operand

    def number(self, value: int) -> str:
        """`value` written in the task's base."""
        return self.show_answer(to_digits(torch.tensor([value]), self.base, n_digits(value, self.base))[0].tolist())

    def show(self, problem: list[int]) -> str:
        return f" {self.operator} ".join(self.number(v) for v in problem)

    def reading_order(self, values: list) -> list:
        return list(reversed(values))  # numbers are shown most significant digit first

    def show_answer(self, symbols: list[int]) -> str:
        text = "".join(DIGITS[s] if 0 <= s < min(self.base, len(DIGITS)) else "?" for s in reversed(symbols))
        return text.lstrip("0") or "0"


class AdditionTask(_ArithmeticTask):
    """a + b in base 16, least significant digit first: ``8e3 + 8e3 = 0d7 0`` (0x3e8 + 0x3e8 = 0x7d0).

    Operands are 0..1000 by default; the answer has as many digits as the largest possible sum.
    """

    name = "addition"
    operator = "+"
    # Right on every pair, not on 99.9% of a sample: train until an exhaustive check passes.
    train_defaults: ClassVar[dict] = {"target": 1.0, "exhaustive_check": True, "max_samples": 300_000}
    description = "add two numbers (base 16, operands 0..1000 by default)"

    def answer_digits(self, operand_digits: int) -> int:
        return n_digits(2 * self.largest(operand_digits), self.base)

    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class MultiplyTask(_ArithmeticTask):
    """a * b in base 16, least significant digit first: ``f0 * 2 = e1 0`` (0x0f * 0x02 = 0x1e).

    With `scratch` (the default) the model first writes the partial products of long multiplication,
    ``a * b_j * 16**j`` for every digit ``b_j`` of ``b``, each in a segment of its own, and then the
    answer, which is their sum: digit ``i`` of every partial product and of the answer share position
    ``i``, so the answer is a position-coupled addition, and each partial product digit depends on
    three input digits (``a_i``, ``a_{i-1}`` and ``b_j``, for the carry). Scratch slots are trained,
    never scored.

    >>> task = MultiplyTask()
    >>> [p[0].tolist() for p in task.scratch_digits(torch.tensor([0x0f]), torch.tensor([0x12]), 2)]
    [[14, 1, 0, 0], [0, 15, 0, 0]]
    >>> batch = task.encode(torch.tensor([[0x0f, 0x12]]))  # f * 12 = 1e + f0 = 10e
    >>> batch.answers, batch.scored  # two partial products of 4 digits, each closed by SEP, then 4 answer digits
    (14, 4)
    >>> (batch.targets[0, -batch.answers:] - FIRST_SYMBOL).tolist()  # least significant digit first
    [14, 1, 0, 0, -3, 0, 15, 0, 0, -3, 14, 0, 1, 0]
    """

    name = "multiply"
    operator = "*"
    description = "multiply two numbers (base 16, operands 0..255 by default; partial products as scratch)"
    # the partial products and the answer need segments of their own; reading the scratch back needs a loss
    # on every step; the learning rate decays over the budget: with 300k seed 0 stood at 84% held-out at the
    # end, with 600k seeds 0-3 passed 99% at 279k-508k samples (README, learning benchmark)
    train_defaults: ClassVar[dict] = {"n_segments": 8, "feedback": True, "deep_supervision": True,
                                      "max_samples": 600_000}

    def __init__(self, base: int = 16, max_operand: int = 255, holdout: float = 0.1, scratch: bool = True) -> None:
        super().__init__(base, max_operand, holdout)
        if not isinstance(scratch, bool):
            raise ConfigError(f"scratch must be true or false, got {scratch!r}")
        self.scratch = scratch

    def scratch_digits(self, a: torch.Tensor, b: torch.Tensor, width: int) -> list[torch.Tensor]:
        if not self.scratch:
            return []
        b_digits = to_digits(b, self.base, width)
        out = self.answer_digits(width)
        return [to_digits(a * b_digits[:, j] * self.base ** j, self.base, out) for j in range(width)]

    def answer_digits(self, operand_digits: int) -> int:
        return n_digits(self.largest(operand_digits) ** 2, self.base)

    def combine(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b
