"""One training step (data, forward+loss, backward+optimizer): the code path training and the bench share.

    >>> from thinker.training.config import TrainConfig
    >>> step = TrainStep(TrainConfig.from_dict({"task": "copy", "device": "cpu", "d_model": 16, "n_layers": 1}),
    ...                  torch.device("cpu"))
    >>> bool(step() > 0)
    True

The step touches no process-wide switch (threads, TF32, the global seed): whoever starts the run sets
those once (`thinker.device.configure_torch`). Weights are initialised from `cfg.seed` inside a forked
RNG, so building a step leaves the global generator as it was.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from torch.profiler import record_function

from thinker.model import Thinker
from thinker.tasks import PAD, make_task
from thinker.training.config import TrainConfig
from thinker.training.timing import PhaseTimer

# (samples seen, loss) -> loss: lets tests poison or break a step; None in every real run
LossHook = Callable[[int, torch.Tensor], torch.Tensor]


def masked_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over answer slots only (targets are PAD elsewhere); no host sync."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=PAD)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device):
    """Run the block with the global RNGs seeded, then put them back as they were."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: not on norms, biases, embeddings or the memory tokens."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "emb" not in name and name != "memory" else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class WeightAverage:
    """An exponential moving average of the weights, kept as one flat vector.

    The averaged model's parameters are views into that vector, so one `lerp_` per step updates all
    of them. The decay starts short ((1 + n) / (10 + n) after n updates) and grows to `decay`. The
    average is what gets evaluated and saved: it sits at the bottom of the valley the raw iterate
    keeps bouncing around in, which is what the last 0.1% needs.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.flat = parameters_to_vector(self.model.parameters()).detach().clone()
        vector_to_parameters(self.flat, self.model.parameters())  # parameters become views of `flat`

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.flat.lerp_(parameters_to_vector(model.parameters()), 1.0 - decay)


class TrainStep:
    """Owns the task, model, optimizer, data generator and timer of one run; calling it trains one step."""

    def __init__(self, cfg: TrainConfig, device: torch.device, fused: bool | None = None) -> None:
        self.cfg, self.device = cfg, device
        self.task = make_task(cfg.task, **cfg.task_options)
        self.model_config = cfg.model_config(self.task)
        with seeded(cfg.seed, device):
            self.model = Thinker(self.model_config).to(device)
        fused = device.type == "cuda" if fused is None else fused
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg.weight_decay), lr=cfg.lr,
                                           betas=(0.9, cfg.beta2), fused=fused)
        self.generator = torch.Generator(device).manual_seed(cfg.seed)
        # On a GPU, draw batches without data-dependent shapes: no host synchronisation per step.
        self.fixed_shape = device.type == "cuda"
        self.timer = PhaseTimer(device)
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        self.average = WeightAverage(self.model, cfg.ema) if cfg.ema else None
        self.samples = 0
        self.lr_scale = 1.0
        self.loss_hook: LossHook | None = None

    def autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def learning_rate(self) -> float:
        """Linear warmup, then cosine decay to `min_lr_ratio` at `max_samples`; times `lr_scale`."""
        cfg = self.cfg
        if self.samples < cfg.warmup_samples:
            scale = (self.samples + cfg.batch_size) / (cfg.warmup_samples + cfg.batch_size)
        else:
            progress = min(1.0, (self.samples - cfg.warmup_samples) / max(1, cfg.max_samples - cfg.warmup_samples))
            scale = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        return cfg.lr * scale * self.lr_scale

    def __call__(self) -> torch.Tensor:
        """Run one step; returns the loss as a detached device tensor (reading it is a sync).

        The phases carry `record_function` labels, so a torch.profiler trace shows them by name.
        """
        cfg, timer = self.cfg, self.timer
        timer.start()
        with record_function("data"):
            batch = self.task.sample(cfg.batch_size, self.generator, fixed_shape=self.fixed_shape)
        timer.mark()
        self.model.train()
        with record_function("forward"):
            with self.autocast():
                # only the answer slots' logits, computed from one position layout for the batch
                logits = self.forward(batch.inputs, shared_layout=True, tail=batch.answers)  # (B, A, vocab)
            loss = masked_loss(logits, batch.targets[:, -batch.answers:])
            if self.loss_hook is not None:
                loss = self.loss_hook(self.samples, loss)
        timer.mark()
        with record_function("backward"):
            lr = self.learning_rate()
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_norm:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
            self.optimizer.step()
            if self.average is not None:
                self.average.update(self.model)
        timer.mark()
        self.samples += cfg.batch_size
        return loss.detach()

    @property
    def eval_model(self) -> Thinker:
        """The model to evaluate and save: the weight average when on, else the model itself."""
        return self.average.model if self.average is not None else self.model

    def state(self) -> dict:
        """A deep copy of model, average and optimizer state (kept on the device: restoring is a copy)."""
        return {"model": copy.deepcopy(self.model.state_dict()),
                "eval_model": copy.deepcopy(self.eval_model.state_dict()),
                "optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.eval_model.load_state_dict(state["eval_model"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
