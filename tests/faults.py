"""Faults the tests inject into training: loss hooks (`train(..., loss_hook=...)`), nothing in the product.

    train(cfg, loss_hook=nan_once(1024))          # one poisoned step from 1024 samples on
    inject(monkeypatch, {0: diverge(512)})        # the first trial a sweep trains diverges
"""

import torch


def nan_once(at: int):
    """Poison the loss of one step, the first at or after `at` samples."""
    fired = []

    def hook(samples: int, loss: torch.Tensor) -> torch.Tensor:
        if samples >= at and not fired:
            fired.append(samples)
            return loss * float("nan")
        return loss

    return hook


def diverge(at: int):
    """Poison the loss of every step from `at` samples on."""
    return lambda samples, loss: loss * float("nan") if samples >= at else loss


def error(at: int, kind: type[BaseException] = RuntimeError):
    """Raise from the step at `at` samples (`KeyboardInterrupt`: Ctrl-C there)."""

    def hook(samples: int, loss: torch.Tensor) -> torch.Tensor:
        if samples >= at:
            raise kind(f"injected fault at {samples} samples")
        return loss

    return hook


def device_crash(at: int):
    """From `at` samples, fail as a step does after a kernel wrote out of bounds: CUDA's context is then lost."""

    def hook(samples: int, loss: torch.Tensor) -> torch.Tensor:
        if samples >= at:
            raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
        return loss

    return hook


def inject(monkeypatch, hooks: dict) -> None:
    """Make the n-th training run in this process (0, 1, ...) use `hooks[n]`: trial n of a one-worker sweep."""
    import thinker.sweeps.objective as objective

    real_train, calls = objective.train, []

    def train(cfg, **kwargs):
        n = len(calls)
        calls.append(n)
        return real_train(cfg, loss_hook=hooks.get(n), **kwargs)

    monkeypatch.setattr(objective, "train", train)


def scores(monkeypatch, exact_matches: list[float]) -> None:
    """Make a sweep's objective see these held-out exact matches at its evaluations, in order (the last one from
    then on), whatever the model scored: a trial whose exact match falls after a good evaluation, say."""
    import thinker.sweeps.objective as objective

    real_train = objective.train

    def train(cfg, on_eval, **kwargs):
        seen = []

        def scripted(samples: int, metrics: dict) -> None:
            seen.append(samples)
            on_eval(samples, {**metrics, "exact_match": exact_matches[min(len(seen), len(exact_matches)) - 1]})

        return real_train(cfg, on_eval=scripted, **kwargs)

    monkeypatch.setattr(objective, "train", train)
