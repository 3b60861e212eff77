"""Sequence tasks: a sequence of symbols in, one sequence out (copy, flip, sort, roll).

    >>> task = FlipTask(alphabet=2, length=4)
    >>> task.show_answer((task.encode(torch.tensor([[0, 1, 1, 1]])).targets[0, -4:] - FIRST_SYMBOL).tolist())
    '1 1 1 0'
"""

from __future__ import annotations

import torch

from thinker.errors import ConfigError
from thinker.tasks.base import FIRST_SYMBOL, Batch, ProblemError, Task, layout, to_digits


class _SequenceTask(Task):
    """A sequence of `length` symbols in, one sequence out (copy, flip, sort)."""

    def __init__(self, alphabet: int = 11, length: int = 8, long_length: int | None = None,
                 holdout: float = 0.1) -> None:
        super().__init__(holdout)
        if alphabet < 2:
            raise ConfigError(f"alphabet must be at least 2, got {alphabet}")
        if length < 1:
            raise ConfigError(f"length must be positive, got {length}")
        self.alphabet = alphabet
        self.length = self.train_length = length
        self.long_length = long_length or length + max(1, length // 2)
        if self.long_length <= length:
            raise ConfigError(f"long_length ({self.long_length}) must exceed length ({length})")
        self.vocab_size = FIRST_SYMBOL + alphabet
        self.max_len = self.long_length + 1

    def draw(self, n: int, generator: torch.Generator, long: bool) -> torch.Tensor:
        return self.problems_of_length(n, generator, self.long_length if long else self.length)

    def problems_of_length(self, n: int, generator: torch.Generator, length: int) -> torch.Tensor:
        if length < 1:
            raise ProblemError(f"{self.name} makes sequences of at least 1 symbol, not {length}")
        return torch.randint(0, self.alphabet, (n, length), generator=generator, device=generator.device)

    def answer(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, problems: torch.Tensor, long: bool = False, length: int | None = None) -> Batch:
        return layout([problems + FIRST_SYMBOL], self.answer(problems) + FIRST_SYMBOL)

    def space_size(self) -> int:
        return self.alphabet ** self.length

    def problems_at(self, index: torch.Tensor) -> torch.Tensor:
        return to_digits(index, self.alphabet, self.length)

    def parse(self, text: str) -> tuple[list[int], bool]:
        return self._symbols(text.replace(",", " ").split(), text)

    def _symbols(self, words: list[str], text: str) -> tuple[list[int], bool]:
        if len(words) not in (self.length, self.long_length):
            raise ProblemError(f"{text.strip()!r}: {self.name} takes {self.length} symbols ({self.long_length} "
                               f"for a longer-than-training problem) separated by spaces or commas, got "
                               f"{len(words)}")
        bad = [w for w in words if not (w.isdecimal() and int(w) < self.alphabet)]
        if bad:
            raise ProblemError(f"{text.strip()!r}: unknown symbol {bad[0]!r}; symbols are 0..{self.alphabet - 1}")
        return [int(w) for w in words], len(words) == self.long_length

    def show(self, problem: list[int]) -> str:
        return " ".join(map(str, problem))

    def show_answer(self, symbols: list[int]) -> str:
        return " ".join(str(s) if 0 <= s < self.alphabet else "?" for s in symbols)


class CopyTask(_SequenceTask):
    """Copy the sequence: ``3 1 4 1 -> 3 1 4 1`` (``alphabet=2`` is binary, 11 is digits 0..10)."""

    name = "copy"
    description = "copy a sequence of symbols (alphabet 2 is binary, 11 is digits 0..10)"

    def answer(self, x: torch.Tensor) -> torch.Tensor:
        return x


class FlipTask(_SequenceTask):
    """Reverse the sequence: ``0 1 1 0 1 0 -> 0 1 0 1 1 0``."""

    name = "flip"
    description = "reverse a sequence of symbols"

    def answer(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(1)


class SortTask(_SequenceTask):
    """Sort the sequence ascending: ``3 1 4 1 5 -> 1 1 3 4 5``."""

    name = "sort"
    description = "sort a sequence of symbols ascending"

    def answer(self, x: torch.Tensor) -> torch.Tensor:
        return x.sort(dim=1).values


class RollTask(_SequenceTask):
    """Rotate right by k, given after the sequence: ``1 2 3 4 5 | k=2 -> 4 5 1 2 3``.

    The shift is a token of its own (ids after the symbols), one per possible k.
    """

    name = "roll"
    description = "rotate a sequence right by k steps (k given in the input)"

    def __init__(self, alphabet: int = 11, length: int = 8, long_length: int | None = None,
                 holdout: float = 0.1) -> None:
        super().__init__(alphabet, length, long_length, holdout)
        self.vocab_size = FIRST_SYMBOL + alphabet + self.long_length

    def problems_of_length(self, n: int, generator: torch.Generator, length: int) -> torch.Tensor:
        if length > self.long_length:  # every shift k has a token of its own: k < long_length
            raise ProblemError(f"roll makes sequences of 1..{self.long_length} symbols (its shift tokens; train with "
                               f"-o long_length=N for longer), not {length}")
        x = super().problems_of_length(n, generator, length)
        k = torch.randint(0, x.shape[1], (n, 1), generator=generator, device=x.device)
        return torch.cat([x, k], dim=1)  # last column is the shift

    def encode(self, problems: torch.Tensor, long: bool = False, length: int | None = None) -> Batch:
        x, k = problems[:, :-1], problems[:, -1:]
        n = x.shape[1]
        source = (torch.arange(n, device=x.device) - k) % n  # (B, n): y[i] = x[i - k]
        y = torch.gather(x, 1, source)
        shift_token = FIRST_SYMBOL + self.alphabet + k
        return layout([x + FIRST_SYMBOL, shift_token], y + FIRST_SYMBOL)

    def space_size(self) -> int:
        return super().space_size() * self.length

    def problems_at(self, index: torch.Tensor) -> torch.Tensor:
        return torch.cat([super().problems_at(index // self.length), (index % self.length)[:, None]], dim=1)

    def parse(self, text: str) -> tuple[list[int], bool]:
        symbols, sep, shift = text.partition(">>")
        if not sep:
            raise ProblemError(f"{text.strip()!r}: write a roll as SYMBOLS >> K, e.g. '1 2 3 4 5 6 7 8 >> 2'")
        problem, long = self._symbols(symbols.replace(",", " ").split(), text)
        if not (shift.strip().isdecimal() and int(shift) < len(problem)):
            raise ProblemError(f"{text.strip()!r}: the shift must be 0..{len(problem) - 1}, got {shift.strip()!r}")
        return [*problem, int(shift)], long

    def show(self, problem: list[int]) -> str:
        return f"{super().show(problem[:-1])} >> {problem[-1]}"
