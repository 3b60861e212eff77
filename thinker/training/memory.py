"""A training run too large for the CPU's memory, refused before it is built.

On a GPU an allocation that does not fit raises `torch.cuda.OutOfMemoryError`: the bench records the
row as "oom", a sweep fails the trial and goes on. On a CPU it does not raise: Linux hands out pages
until its out-of-memory killer ends the process (or another one on the machine) with no message, so
`thinker train --batch-size 1000000000` would die with exit 137 after filling the machine. Here a run
is measured before it starts, on PyTorch's meta device (shapes without storage): one forward pass of
the real model at the real batch size, counting the bytes of every tensor autograd keeps for the
backward pass, plus the weights, the optimizer's moments and the fixed evaluation sets.

That sum is a floor, not an estimate: the transient buffers of the forward and the gradients of the
backward come on top (three real CPU steps grew the process by 1.5-1.7 times the saved tensors). So a run is
refused only where it cannot fit, never where it might.

    >>> from thinker.training.config import TrainConfig
    >>> needed = least_bytes(TrainConfig.for_task("addition", batch_size=10**9))
    >>> f"{needed.activations / 2**30:,.0f} GiB kept for the backward pass"
    '257,280 GiB kept for the backward pass'
    >>> least_bytes(TrainConfig.for_task("addition", batch_size=10**9), limit=2**30).activations is None
    True
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import psutil
import torch

from thinker.errors import ConfigError
from thinker.model import Thinker
from thinker.tasks import Task, make_task
from thinker.training.config import TrainConfig
from thinker.training.loss import masked_loss

WEIGHT_COPIES = 4  # at the least the weights, AdamW's two moments and the best state's copy of the weights
EVAL_BYTES_PER_TOKEN = 8 + 8 + 1  # an evaluation problem's inputs and targets (int64) and its mask (bool)
CGROUP = Path("/sys/fs/cgroup")


class WontFit(ConfigError):
    """A run that needs more memory than the device has available."""


@dataclasses.dataclass(frozen=True)
class Needed:
    """The least a run holds in memory, by part (bytes). `activations` is None where counting them stopped
    early, having passed the limit it was given (or where weights and evaluation sets had passed it already)."""

    weights: int
    eval_sets: int
    activations: int | None

    @property
    def total(self) -> int | None:
        return None if self.activations is None else self.weights + self.eval_sets + self.activations


class _Enough(Exception):
    """Raised inside the meta forward pass once the count passes the limit: the rest need not be built."""


def least_bytes(cfg: TrainConfig, limit: int | None = None, task: Task | None = None) -> Needed:
    """The bytes a training run of `cfg` holds at least, at the end of a step's forward pass on a CPU.

    Counting stops once it passes `limit` (thousands of thinking steps would otherwise take minutes to
    count). Nothing is allocated and no random generator moves. `task`: the run's own, if made already.
    """
    task = task if task is not None else make_task(cfg.task, **cfg.task_options)
    model_config = cfg.model_config(task)
    # the CPU's attention: `auto` multiplies matrices there, which is what the meta pass must count
    if model_config.attention == "auto":
        model_config = dataclasses.replace(model_config, attention="matmul")
    batch = task.sample(1, torch.Generator().manual_seed(0))
    eval_sets = (cfg.eval_size + cfg.long_eval_size) * batch.inputs.shape[1] * EVAL_BYTES_PER_TOKEN
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = Thinker(model_config)
    weights = WEIGHT_COPIES * sum(p.numel() * p.element_size() for p in model.parameters())
    room = None if limit is None else limit - weights - eval_sets
    if room is not None and room < 0:
        return Needed(weights, eval_sets, None)
    seen = {p.untyped_storage()._cdata for p in model.parameters()}  # the weights, counted above
    saved, kept = [0], []

    def count(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage._cdata not in seen:  # several views of one tensor are one allocation
            seen.add(storage._cdata)
            kept.append(tensor)  # alive to the end, so that no later storage takes a counted one's address
            saved[0] += storage.nbytes()
            if room is not None and saved[0] > room:
                raise _Enough
        return tensor

    def meta(t: torch.Tensor) -> torch.Tensor:
        return torch.empty((cfg.batch_size, *t.shape[1:]), dtype=t.dtype, device="meta")

    forward = model.logits_per_step if cfg.deep_supervision else model
    targets = meta(batch.targets)
    try:  # as `TrainStep.loss` runs it
        with torch.random.fork_rng(devices=[]), torch.autograd.graph.saved_tensors_hooks(count, lambda t: t):
            logits = forward(meta(batch.inputs), shared_layout=True, tail=batch.answers,
                             scratch=targets if model_config.feedback else None)
            for step_logits in logits if cfg.deep_supervision else [logits]:
                masked_loss(step_logits, targets[:, -batch.answers:])
    except _Enough:
        return Needed(weights, eval_sets, None)
    # autocast keeps half as many bytes at the least (some tensors stay in float32)
    return Needed(weights, eval_sets, saved[0] // 2 if cfg.precision == "bf16" else saved[0])


def available_bytes() -> int:
    """Memory this process can still take on this machine: what the system has available, or less where a
    container's memory limit (cgroup v2) leaves less."""
    available = psutil.virtual_memory().available
    try:
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit != "max":
            available = min(available, int(limit) - int((CGROUP / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(0, available)


def check_fits(cfg: TrainConfig, device: torch.device, available: int | None = None,
               task: Task | None = None) -> None:
    """WontFit if a run of `cfg` on the CPU `device` needs more memory than is `available` (default: what
    the machine has now). Other devices raise their own out-of-memory errors and are not checked."""
    if device.type != "cpu":
        return
    available = available_bytes() if available is None else available
    needed = least_bytes(cfg, limit=available, task=task)
    if needed.total is not None and needed.total <= available:
        return
    run = f"batch_size {cfg.batch_size}, steps {cfg.model.steps}, d_model {cfg.model.d_model}"
    if needed.weights + needed.eval_sets > available:  # counting stopped before the forward pass
        raise WontFit(f"{run}: this run needs at least {gib(needed.weights + needed.eval_sets)} of memory before "
                      f"its first step ({gib(needed.weights)} of weights and optimizer state, "
                      f"{gib(needed.eval_sets)} of evaluation problems); this machine has {gib(available)} available")
    raise WontFit(f"{run}: this run needs more memory than the {gib(available)} this machine has available: "
                  f"one forward pass alone keeps more than that for the backward pass")


def gib(n: int) -> str:
    """Bytes in GiB, readable at any size.

    >>> gib(3 * 2**30), gib(2**20), gib(5 * 2**50)
    ('3.0 GiB', '0.001 GiB', '5,242,880 GiB')
    """
    value = n / 2**30
    return f"{value:,.0f} GiB" if value >= 1000 else f"{value:.1f} GiB" if value >= 0.1 else f"{value:.3f} GiB"
