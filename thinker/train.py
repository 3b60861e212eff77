"""Train a thinker on one task: one config in, one result out.

    >>> from thinker.train import TrainConfig, train
    >>> result = train(TrainConfig(task="copy", max_samples=2048, device="cpu"))  # doctest: +SKIP
    >>> result.summary()["exact_match"]  # doctest: +SKIP

The trainer imports neither Optuna nor MLflow: it reports through a `Logger` and an optional
`on_eval(samples, metrics)` hook, which may raise to stop training (a pruned trial, say).

Per-phase timing splits every step into data, forward+loss and backward+optimizer. On CUDA the
boundaries are CUDA events read once per log interval (no synchronisation per step); on CPU they are
`perf_counter` readings. Either way the three phases add up to the step time by construction, because
the step is measured from the same marks.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import record_function

from thinker.device import pick_device, synchronize
from thinker.logger import Logger, NullLogger
from thinker.model import Thinker, ThinkerConfig
from thinker.tasks import PAD, Batch, Task, make_task

PHASES = ("data", "forward", "backward")
FAULTS = ("nan", "diverge", "error")  # see TrainConfig.fault
PRECISIONS = ("fp32", "tf32", "bf16")
EVAL_SEED = 20231218  # one fixed held-out set for every run, so runs compare on the same problems
SPIKE_MARGIN = 0.1  # a loss this close to its average is never a spike, however small the average


@dataclass
class TrainConfig:
    """Everything one training run needs; the CLI, sweeps and bench all fill this one object."""

    task: str = "addition"
    """Task name from `thinker.tasks.TASKS`."""
    task_options: dict = field(default_factory=dict)
    """Keyword options for the task (e.g. {"base": 16, "max_operand": 1000})."""
    d_model: int = 64
    """Model width."""
    n_heads: int = 4
    """Attention heads."""
    n_layers: int = 2
    """Blocks in the shared stack."""
    latent: int = 4
    """Learned memory tokens."""
    steps: int = 2
    """Recurrent thinking steps."""
    dropout: float = 0.0
    """Dropout in training."""
    position_jitter: bool = False
    """Random position offsets in training (for length generalisation; slows learning)."""
    relative_bias: bool = True
    """Learned attention bias by position difference (makes carries learn fast)."""
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
    eval_every: int = 8192
    """Evaluate every this many samples."""
    eval_size: int = 2048
    """Held-out problems in the fixed evaluation set."""
    long_eval_size: int = 512
    """Longer-than-training problems for the length-generalisation metric (0: skip)."""
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
    threads: int = 0
    """CPU threads for torch (0: torch's default)."""
    seed: int = 0
    """Seed for weights, data and jitter; the same seed gives the same losses on CPU."""
    fault: str = ""
    """Fault injection for tests, from SAMPLES on: "nan@SAMPLES" poisons the loss once,
    "diverge@SAMPLES" poisons it at every step, "error@SAMPLES" raises."""

    def __post_init__(self) -> None:
        positive = ("d_model", "n_heads", "n_layers", "steps", "batch_size", "max_samples",
                    "eval_every", "eval_size", "log_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("latent", "max_seconds", "warmup_samples", "clip_norm", "weight_decay",
                     "max_restarts", "threads", "long_eval_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.fault and not _parse_fault(self.fault):
            raise ValueError(f"fault must look like KIND@SAMPLES with KIND in {', '.join(FAULTS)}, got {self.fault!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a dict, rejecting unknown keys (a typo should not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config key(s): {', '.join(unknown)}")
        return cls(**values)

    def model_config(self, task: Task) -> ThinkerConfig:
        return ThinkerConfig(vocab_size=task.vocab_size, max_len=task.max_len, d_model=self.d_model,
                             n_heads=self.n_heads, n_layers=self.n_layers, latent=self.latent,
                             steps=self.steps, dropout=self.dropout,
                             position_jitter=self.position_jitter, relative_bias=self.relative_bias)


class TrainingDiverged(RuntimeError):
    """The loss kept spiking or going non-finite after `max_restarts` restarts."""


def _parse_fault(fault: str) -> tuple[str, int] | None:
    kind, _, at = fault.partition("@")
    if kind in FAULTS and at.isdigit():
        return kind, int(at)
    return None


class PhaseTimer:
    """Marks phase boundaries; `collect()` turns them into per-step milliseconds.

    On CUDA, marks are events recorded in the stream and read only in `collect()`, which syncs once.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._steps: list[list] = []

    def _now(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def start(self) -> None:
        self._steps.append([self._now()])

    def mark(self) -> None:
        self._steps[-1].append(self._now())

    def collect(self) -> list[dict[str, float]]:
        """Per-step {data, forward, backward, step} in ms for every finished step since last call."""
        done = [marks for marks in self._steps if len(marks) == len(PHASES) + 1]
        self._steps = [marks for marks in self._steps if len(marks) != len(PHASES) + 1]
        if not done:
            return []
        if self.cuda:
            done[-1][-1].synchronize()  # the one sync: every earlier event has completed too
            elapsed = lambda a, b: a.elapsed_time(b)  # noqa: E731
        else:
            elapsed = lambda a, b: (b - a) * 1000.0  # noqa: E731
        rows = []
        for marks in done:
            row = {phase: elapsed(marks[i], marks[i + 1]) for i, phase in enumerate(PHASES)}
            row["step"] = elapsed(marks[0], marks[-1])
            rows.append(row)
        return rows


def masked_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over answer slots only (targets are PAD elsewhere); no host sync."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=PAD)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "emb" not in name and name != "memory" else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class StepRunner:
    """One training step (data, forward+loss, backward+optimizer): the code path training and the
    benchmark share.

    >>> runner = StepRunner(TrainConfig(task="copy", device="cpu", d_model=16, n_layers=1))
    >>> loss = runner.step()
    >>> bool(loss > 0)
    True
    """

    def __init__(self, cfg: TrainConfig, device: torch.device | None = None,
                 fused: bool | None = None) -> None:
        self.cfg = cfg
        self.device = device if device is not None else pick_device(cfg.device)[0]
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.task = make_task(cfg.task, **cfg.task_options)
        self.model_config = cfg.model_config(self.task)
        self.model = Thinker(self.model_config).to(self.device)
        fused = self.device.type == "cuda" if fused is None else fused
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, cfg.weight_decay), lr=cfg.lr,
                                           betas=(0.9, cfg.beta2), fused=fused)
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed)
        self.timer = PhaseTimer(self.device)
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        # The averaged weights are what gets evaluated and saved: they sit at the bottom of the
        # valley the raw iterate keeps bouncing around in, which is what the last 0.1% needs.
        self.ema_model = copy.deepcopy(self.model).requires_grad_(False) if cfg.ema else None
        self.updates = 0
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = cfg.precision == "tf32"
            torch.backends.cudnn.allow_tf32 = cfg.precision == "tf32"
        self.samples = 0
        self.lr_scale = 1.0
        self._fault = _parse_fault(cfg.fault) if cfg.fault else None

    def autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def learning_rate(self) -> float:
        cfg = self.cfg
        if self.samples < cfg.warmup_samples:
            scale = (self.samples + cfg.batch_size) / (cfg.warmup_samples + cfg.batch_size)
        else:
            progress = min(1.0, (self.samples - cfg.warmup_samples) / max(1, cfg.max_samples - cfg.warmup_samples))
            scale = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        return cfg.lr * scale * self.lr_scale

    def step(self) -> torch.Tensor:
        """Run one step; returns the loss as a detached device tensor (reading it is a sync).

        The phases carry `record_function` labels, so a torch.profiler trace shows them by name.
        """
        cfg, timer = self.cfg, self.timer
        timer.start()
        with record_function("data"):
            batch = self.task.sample(cfg.batch_size, self.generator)
        timer.mark()
        self.model.train()
        with record_function("forward"):
            with self.autocast():
                logits = self.forward(batch.inputs)  # (B, T, vocab)
            loss = masked_loss(logits, batch.targets)
            loss = self._inject_fault(loss)
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
            self._update_ema()
        timer.mark()
        self.samples += cfg.batch_size
        return loss.detach()

    def _inject_fault(self, loss: torch.Tensor) -> torch.Tensor:
        if self._fault is None or self.samples < self._fault[1]:
            return loss
        kind, _ = self._fault
        if kind != "diverge":
            self._fault = None  # fire once
        if kind == "error":
            raise RuntimeError(f"injected fault at {self.samples} samples")
        return loss * float("nan")

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema_model is None:
            return
        self.updates += 1
        decay = min(self.cfg.ema, (1 + self.updates) / (10 + self.updates))  # short memory at first
        ema = list(self.ema_model.parameters())
        torch._foreach_lerp_(ema, list(self.model.parameters()), 1.0 - decay)

    @property
    def eval_model(self) -> Thinker:
        """The model to evaluate and save: the weight average when on, else the model itself."""
        return self.ema_model if self.ema_model is not None else self.model

    def state(self) -> dict:
        """A deep copy of model, average and optimizer state (kept on the device: restoring is a copy)."""
        return {"model": copy.deepcopy(self.model.state_dict()),
                "eval_model": copy.deepcopy(self.eval_model.state_dict()),
                "optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.eval_model.load_state_dict(state["eval_model"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))


@torch.no_grad()
def evaluate(model: Thinker, batches: list[Batch], chunk: int = 1024, autocast=None) -> dict[str, float]:
    """Loss, token accuracy and exact match (every answer token right) over fixed batches."""
    was_training = model.training
    model.eval()
    loss_sum, tokens, right_tokens, exact, samples = 0.0, 0, 0, 0, 0
    for batch in batches:
        for i in range(0, len(batch), chunk):
            inputs, targets, mask = (t[i:i + chunk] for t in (batch.inputs, batch.targets, batch.mask))
            with autocast or contextlib.nullcontext():
                logits = model(inputs)
            n_answer = mask.sum()
            loss_sum += (masked_loss(logits, targets) * n_answer).item()  # .item(): sync point
            right = (logits.argmax(-1) == targets) & mask
            tokens += int(n_answer)
            right_tokens += int(right.sum())
            exact += int((right.sum(1) == mask.sum(1)).sum())
            samples += inputs.shape[0]
    model.train(was_training)
    return {"loss": loss_sum / max(tokens, 1), "token_accuracy": right_tokens / max(tokens, 1),
            "exact_match": exact / max(samples, 1)}


def eval_sets(task: Task, cfg: TrainConfig, device: torch.device) -> tuple[Batch, Batch | None]:
    """The fixed held-out set and the longer-than-training set, the same for every seed."""
    g = torch.Generator(device).manual_seed(EVAL_SEED)
    held_out = task.sample(cfg.eval_size, g, split="eval")
    long = task.sample(cfg.long_eval_size, g, split="long") if cfg.long_eval_size else None
    return held_out, long


@dataclass
class TrainResult:
    task: str
    exact_match: float
    token_accuracy: float
    length_exact_match: float
    loss: float
    samples: int
    steps: int
    train_seconds: float
    eval_seconds: float
    data_ms: float
    forward_ms: float
    backward_ms: float
    step_ms: float
    restarts: int
    stop_reason: str
    best_samples: int
    samples_to_target: int | None
    seconds_to_target: float | None
    params: int
    device: str
    history: list[dict] = field(default_factory=list, repr=False)
    state_dict: dict = field(default_factory=dict, repr=False)
    model_config: dict = field(default_factory=dict, repr=False)

    def summary(self) -> dict:
        """The JSON-friendly part: everything but history and weights."""
        skip = {"history", "state_dict", "model_config"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


def save_checkpoint(out, cfg: TrainConfig, result: TrainResult) -> Path:
    """Write model.pt (weights, model and training config, summary), config.json and result.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "model.pt"
    torch.save({"model": result.state_dict, "model_config": result.model_config,
                "train_config": cfg.to_dict(), "result": result.summary()}, checkpoint)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    result_json = {**result.summary(), "history": result.history}
    (out / "result.json").write_text(json.dumps(result_json, indent=2) + "\n")
    return checkpoint


def train(cfg: TrainConfig, logger: Logger | None = None, on_eval=None) -> TrainResult:
    """Train until the target exact match, the sample budget or the time budget; keep the best state.

    `logger.log(metrics, step)` gets training metrics every `log_every` steps and evaluation metrics
    at every evaluation, stepped by samples seen. `on_eval(samples, metrics)` runs after each
    evaluation; an exception from it ends training and propagates.
    """
    logger = logger or NullLogger()
    device, _ = pick_device(cfg.device)
    runner = StepRunner(cfg, device)
    held_out, long = eval_sets(runner.task, cfg, device)

    def run_eval() -> dict[str, float]:
        metrics = evaluate(runner.eval_model, [held_out], autocast=runner.autocast())
        if long is not None:
            long_metrics = evaluate(runner.eval_model, [long], autocast=runner.autocast())
            metrics["length_exact_match"] = long_metrics["exact_match"]
        return metrics

    best = {"exact_match": -1.0, "loss": math.inf, "token_accuracy": 0.0, "length_exact_match": 0.0}
    best_samples, best_state = 0, runner.state()
    phase_rows: list[dict[str, float]] = []
    history: list[dict] = []
    pending_losses: list[torch.Tensor] = []
    loss_avg: float | None = None
    restarts, steps, next_eval = 0, 0, cfg.eval_every
    samples_to_target = seconds_to_target = None
    eval_seconds = 0.0
    stop_reason = "max_samples"
    start = time.perf_counter()

    while True:
        pending_losses.append(runner.step())
        steps += 1
        out_of_samples = runner.samples >= cfg.max_samples
        out_of_time = bool(cfg.max_seconds) and time.perf_counter() - start >= cfg.max_seconds
        due_eval = runner.samples >= next_eval or out_of_samples or out_of_time

        if steps % cfg.log_every == 0 or due_eval:
            losses = torch.stack(pending_losses).tolist()  # sync point: one per log interval
            pending_losses.clear()
            rows = runner.timer.collect()
            phase_rows.extend(rows)
            interval_loss = sum(losses) / len(losses)
            spiked = not math.isfinite(interval_loss) or (
                loss_avg is not None and interval_loss > cfg.spike_factor * loss_avg + SPIKE_MARGIN)
            if spiked:
                restarts += 1
                logger.log({"restarts": restarts}, runner.samples)
                if restarts > cfg.max_restarts:
                    raise TrainingDiverged(f"loss diverged ({interval_loss:.4g}) after {cfg.max_restarts} restarts")
                runner.restore(best_state)
                runner.lr_scale *= cfg.restart_lr_factor
                loss_avg = None
                continue
            loss_avg = interval_loss if loss_avg is None else 0.9 * loss_avg + 0.1 * interval_loss
            metrics = {"train_loss": interval_loss, "lr": runner.learning_rate()}
            if rows:
                elapsed = sum(r["step"] for r in rows) / 1000.0
                metrics["samples_per_s"] = len(rows) * cfg.batch_size / max(elapsed, 1e-9)
                for phase in PHASES:
                    metrics[f"{phase}_ms"] = sum(r[phase] for r in rows) / len(rows)
            logger.log(metrics, runner.samples)

        if due_eval:
            next_eval = (runner.samples // cfg.eval_every + 1) * cfg.eval_every  # a grid shared by all runs
            eval_start = time.perf_counter()
            metrics = run_eval()
            eval_seconds += time.perf_counter() - eval_start
            elapsed = time.perf_counter() - start
            improved = (metrics["exact_match"], -metrics["loss"]) > (best["exact_match"], -best["loss"])
            if improved:
                best, best_samples, best_state = dict(metrics), runner.samples, runner.state()
            reached = metrics["exact_match"] >= cfg.target
            if reached and samples_to_target is None:
                samples_to_target, seconds_to_target = runner.samples, elapsed
            record = {"samples": runner.samples, "seconds": elapsed, **metrics}
            history.append(record)
            logger.log({f"eval_{k}": v for k, v in metrics.items()}, runner.samples)
            if on_eval is not None:
                on_eval(runner.samples, metrics)
            if reached:
                stop_reason = "target"
                break
            if out_of_samples or out_of_time:
                stop_reason = "max_samples" if out_of_samples else "max_seconds"
                break

    synchronize(device)
    train_seconds = time.perf_counter() - start
    runner.restore(best_state)
    timing = {phase: sum(r[phase] for r in phase_rows) / max(len(phase_rows), 1)
              for phase in (*PHASES, "step")}
    return TrainResult(
        task=cfg.task, exact_match=best["exact_match"], token_accuracy=best["token_accuracy"],
        length_exact_match=best.get("length_exact_match", 0.0), loss=best["loss"],
        samples=runner.samples, steps=steps, train_seconds=train_seconds, eval_seconds=eval_seconds,
        data_ms=timing["data"], forward_ms=timing["forward"], backward_ms=timing["backward"],
        step_ms=timing["step"], restarts=restarts, stop_reason=stop_reason, best_samples=best_samples,
        samples_to_target=samples_to_target, seconds_to_target=seconds_to_target,
        params=runner.model.num_params(), device=str(device), history=history,
        state_dict={k: v.detach().cpu() for k, v in best_state["eval_model"].items()},
        model_config=runner.model_config.to_dict(),
    )
