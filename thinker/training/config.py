"""`TrainConfig`: everything one training run needs, with the model's own config nested inside.

    >>> cfg = TrainConfig.from_dict({"task": "copy", "steps": 3, "lr": 1e-3})
    >>> cfg.model.steps, cfg.lr
    (3, 0.001)
    >>> cfg.to_dict()["steps"]
    3

The CLI, sweeps and the bench all fill this one object. Its dict form is flat (`steps` beside `lr`):
that is what search spaces, MLflow parameters and saved configs use. The model's fields that a task
decides (vocabulary, longest segment) are filled in by `model_config(task)`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields

from thinker.errors import ConfigError
from thinker.exam import positions_for
from thinker.model import ThinkerConfig
from thinker.parsing import check_type
from thinker.tasks import ANS, SEP, TASKS, Task

PRECISIONS = ("fp32", "tf32", "bf16")
# ThinkerConfig fields a task decides (model_config fills them in), never set by hand
TASK_DERIVED = ("vocab_size", "max_len", "sep_id", "ans_id")
MODEL_FIELDS = tuple(f.name for f in fields(ThinkerConfig) if f.name not in TASK_DERIVED)


@dataclass
class TrainConfig:
    """One training run: task, model (nested), optimisation, budgets, evaluation and runtime."""

    task: str = "addition"
    """Task name from `thinker.tasks.TASKS`."""
    task_options: dict = field(default_factory=dict)
    """Keyword options for the task (e.g. {"base": 16, "max_operand": 1000})."""
    model: ThinkerConfig = field(default_factory=ThinkerConfig)
    """Width, heads, layers, latent tokens, thinking steps, ... (see `thinker.model.ThinkerConfig`)."""
    batch_size: int = 64
    """Samples per optimizer step."""
    lr: float = 3e-3
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to norms, biases and embeddings)."""
    beta2: float = 0.99
    """AdamW second-moment decay."""
    warmup_samples: int = 4096
    """Linear warmup length, in samples."""
    min_lr_ratio: float = 0.1
    """Cosine decay ends at this fraction of the peak rate, at max_samples."""
    deep_supervision: bool = False
    """Train on the answer (and scratch) after every thinking step, not only the last (the mean of the
    steps' losses); the model's `feedback` needs it, so that a step learns to write what the next reads."""
    min_steps: int = 0
    """Think for a random number of steps per batch, drawn uniformly from min_steps..steps (0: always
    `steps`): the answer must be right after any of them, so extra steps at test time keep it right."""
    clip_norm: float = 1.0
    """Gradient clipping norm; 0 turns clipping off."""
    ema: float = 0.99
    """Decay of the exponential moving average of the weights that is evaluated and saved (0: off)."""
    max_samples: int = 150_000
    """Sample budget."""
    max_seconds: float = 0.0
    """Wall-clock budget in seconds (0: none)."""
    target: float = 0.999
    """Stop once held-out exact match reaches this (above 1: never)."""
    exhaustive_check: bool = False
    """On reaching the target, score every problem of the task (hard ones first, stopping at the first
    wrong one; tasks of at most 4M problems) and stop only if all are right, else train on; after a
    failed check the next one waits twice as long as the last wait (one evaluation interval, then 2, 4, ...)."""
    eval_every: int = 8192
    """Evaluate every this many samples."""
    eval_size: int = 2048
    """Held-out problems in the fixed evaluation set."""
    long_eval_size: int = 512
    """Longer-than-training problems for the length-generalisation metric (0: skip)."""
    length_eval: int = 0
    """Length (digits of every operand, or symbols) of those longer problems, scored at steps in proportion
    to it (`thinker eval --steps auto`); the model gets positions for them. 0: one digit or symbol more
    than trained, at the trained steps."""
    log_every: int = 16
    """Optimizer steps between training-metric logs (and loss-spike checks)."""
    spike_factor: float = 4.0
    """A training loss above this multiple of its running average is a spike: restore the best state."""
    max_restarts: int = 5
    """Give up (TrainingDiverged) after this many restarts."""
    restart_lr_factor: float = 0.5
    """Multiply the learning rate by this at every restart."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    precision: str = "fp32"
    """fp32, tf32 (CUDA matmuls in TF32) or bf16 (autocast)."""
    compile: bool = False
    """Run the model through torch.compile."""
    cuda_graph: bool = True
    """On CUDA, capture the step's three phases (data, forward, update) as CUDA graphs after a few eager
    steps and replay them: one launch per phase instead of hundreds of kernels. Ignored on CPU and with
    compile; a capture that fails falls back to eager steps with a warning."""
    threads: int = 0
    """CPU threads for torch (0: torch's default); applied by whoever starts the run, not the trainer."""
    seed: int = 0
    """Seed for weights, data and jitter; the same seed gives the same losses on CPU."""

    def __post_init__(self) -> None:
        for f in fields(self):
            check_type(f.name, getattr(self, f.name), f.type)
        if not self.target > 0:
            raise ConfigError(f"target must be positive (an exact match to reach; above 1: never), got {self.target}")
        for name in ("batch_size", "max_samples", "eval_every", "eval_size", "log_every"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("max_seconds", "warmup_samples", "clip_norm", "weight_decay", "max_restarts", "threads",
                     "long_eval_size", "length_eval"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"ema must be in [0, 1), got {self.ema}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.model.feedback and not self.deep_supervision:
            raise ConfigError("feedback needs deep_supervision: a step learns to write the scratch the next one "
                              "reads only if its own loss counts")
        if not 0 <= self.min_steps <= self.model.steps:
            raise ConfigError(f"min_steps must be in 0..steps ({self.model.steps}), got {self.min_steps}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def to_dict(self) -> dict:
        """The flat form: training fields and the model's settable fields side by side."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}
        values["task_options"] = dict(self.task_options)
        return {**values, **{name: getattr(self.model, name) for name in MODEL_FIELDS}}

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from the flat form, rejecting unknown keys (a typo should not pass silently)."""
        own = {f.name for f in fields(cls)} - {"model"}
        unknown = sorted(set(values) - own - set(MODEL_FIELDS))
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        model = ThinkerConfig(**{k: v for k, v in values.items() if k in MODEL_FIELDS})
        return cls(model=model, **{k: v for k, v in values.items() if k in own})

    @classmethod
    def for_task(cls, task: str, **values) -> TrainConfig:
        """The task's own defaults (`Task.train_defaults`), then `values` (flat form) over them.

        >>> TrainConfig.for_task("copy", lr=1e-3).lr
        0.001
        """
        defaults = TASKS[task].train_defaults if task in TASKS else {}
        return cls.from_dict({**defaults, "task": task, **values})

    def replace(self, **changes) -> TrainConfig:
        """A copy with some flat-form fields changed (model fields included)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def model_config(self, task: Task) -> ThinkerConfig:
        """The model config for `task`: the settable fields from here, the rest from the task."""
        longest = positions_for(task, self.length_eval) if self.length_eval else 0
        return dataclasses.replace(self.model, vocab_size=task.vocab_size,
                                   max_len=max(task.max_len, self.model.max_positions, longest), sep_id=SEP, ans_id=ANS)
