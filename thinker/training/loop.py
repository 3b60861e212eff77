"""The training loop: steps until the target, the sample budget or the time budget; keeps the best state.

    >>> from thinker.training.config import TrainConfig
    >>> result = train(TrainConfig(task="copy", max_samples=2048, device="cpu"))  # doctest: +SKIP
    >>> result.summary()["exact_match"]  # doctest: +SKIP

Data path: `TrainConfig` -> `TrainStep` (one step) -> this loop (log intervals, evaluations, loss
spikes, best state) -> `Logger.log(metrics, samples)` and `on_eval(samples, metrics)`. The loop imports
neither Optuna nor MLflow; `on_eval` may raise to stop training (a pruned trial, say).

Losses stay on the device until a log interval (one sync per `log_every` steps). A non-finite loss,
or one far above its running average, restores the best state, scales the learning rate down and
counts a restart: the experiment log's remedy for loss spikes.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch

from thinker.device import current, pick_device, synchronize
from thinker.errors import ConfigError, ThinkerError
from thinker.exam import EXHAUSTIVE_LIMIT, auto_steps, find_wrong
from thinker.logger import Logger, NullLogger
from thinker.training.config import TrainConfig
from thinker.training.evaluation import eval_sets, evaluate
from thinker.training.step import LossHook, TrainStep, seeded
from thinker.training.timing import PHASES, mean_phases

SPIKE_MARGIN = 0.1  # a loss this close to its average is never a spike, however small the average
SUSPECTS = 4096  # wrong problems kept from failed exhaustive checks, to try first at the next


class TrainingDiverged(ThinkerError):
    """The loss kept spiking or going non-finite after `max_restarts` restarts."""


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
    exhaustive: bool | None  # right on every problem at the last exhaustive check (None: never checked)
    exhaustive_checks: int
    exhaustive_check_seconds: float
    exhaustive_wrong: list[str]  # a wrong problem each failed check found
    best_samples: int
    samples_to_target: int | None
    seconds_to_target: float | None
    params: int
    device: str
    cuda_graph: bool  # the steps after the first few were replayed CUDA graphs
    history: list[dict] = field(default_factory=list, repr=False)
    state_dict: dict = field(default_factory=dict, repr=False)
    model_config: dict = field(default_factory=dict, repr=False)

    def summary(self) -> dict:
        """The JSON-friendly part: everything but history and weights."""
        skip = {"history", "state_dict", "model_config"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


def train(cfg: TrainConfig, logger: Logger | None = None, on_eval=None, loss_hook: LossHook | None = None,
          stop_on_interrupt: bool = False) -> TrainResult:
    """Train until the target exact match, the sample budget or the time budget; return the best state.

    `logger.log(metrics, step)` gets training metrics every `log_every` steps and evaluation metrics
    at every evaluation, stepped by samples seen. `on_eval(samples, metrics)` runs after each
    evaluation; an exception from it ends training and propagates. `loss_hook` is for tests.
    With `stop_on_interrupt`, Ctrl-C (KeyboardInterrupt) after the first evaluation ends training like a
    budget does (stop reason "interrupted", the best state returned); before it, it propagates.
    """
    device, _ = pick_device(cfg.device)
    with current(device), seeded(cfg.seed, device):  # dropout and position jitter draw from the global RNG
        return _Loop(cfg, device, logger or NullLogger(), on_eval, loss_hook).run(stop_on_interrupt)


class _Loop:
    def __init__(self, cfg: TrainConfig, device: torch.device, logger: Logger, on_eval, loss_hook) -> None:
        self.cfg, self.device, self.logger, self.on_eval = cfg, device, logger, on_eval
        self.step = TrainStep(cfg, device)
        self.step.loss_hook = loss_hook
        self.held_out, self.long = eval_sets(self.step.task, cfg.eval_size, cfg.long_eval_size, device,
                                             cfg.length_eval)
        # the longer problems think in proportion to their length (as `thinker eval --steps auto`)
        self.long_steps = auto_steps(self.step.model, self.step.task, cfg.length_eval) if cfg.length_eval else None
        self.best = {"exact_match": -1.0, "loss": math.inf, "token_accuracy": 0.0, "length_exact_match": 0.0}
        self.best_samples, self.best_state = 0, self.step.state()
        self.phase_rows: list[dict[str, float]] = []
        self.history: list[dict] = []
        self.loss_avg: float | None = None
        self.restarts = 0
        self.samples_to_target: int | None = None
        self.seconds_to_target: float | None = None
        self.eval_seconds = 0.0
        self.exhaustive: bool | None = None
        self.exhaustive_checks, self.exhaustive_check_seconds = 0, 0.0
        self.suspects: torch.Tensor | None = None  # problems earlier checks found wrong
        # After a failed check the next waits twice as long as the last wait (starting at one evaluation):
        # a check that fails can cost most of a full pass when the last few wrong problems are scattered.
        self.next_check, self.check_gap = 0, cfg.eval_every
        self.exhaustive_wrong: list[str] = []  # the first of them at each failed check, in notation
        if cfg.exhaustive_check and self.step.task.space_size() > EXHAUSTIVE_LIMIT:
            raise ConfigError(f"exhaustive_check: {cfg.task} has {self.step.task.space_size():,} problems, more than "
                              f"the {EXHAUSTIVE_LIMIT:,} an exhaustive check scores")

    def run(self, stop_on_interrupt: bool = False) -> TrainResult:
        self.start, self.steps = time.perf_counter(), 0
        try:
            stop_reason = self.train()
        except KeyboardInterrupt:
            if not stop_on_interrupt or not self.history:
                raise
            stop_reason = "interrupted"
        synchronize(self.device)
        return self.result(self.steps, stop_reason, time.perf_counter() - self.start)

    def train(self) -> str:
        """Step, log and evaluate until a stop; the reason."""
        cfg, step = self.cfg, self.step
        pending_losses: list[torch.Tensor] = []
        next_eval = cfg.eval_every
        while True:
            pending_losses.append(step())
            self.steps += 1
            out_of_samples = step.samples >= cfg.max_samples
            out_of_time = bool(cfg.max_seconds) and time.perf_counter() - self.start >= cfg.max_seconds
            due_eval = step.samples >= next_eval or out_of_samples or out_of_time
            if self.steps % cfg.log_every == 0 or due_eval:
                losses = torch.stack(pending_losses).tolist()  # sync point: one per log interval
                pending_losses.clear()
                if not self.log_interval(losses):
                    continue  # a spike: the best state is back; evaluate once the loss is sane again
            if due_eval:
                next_eval = (step.samples // cfg.eval_every + 1) * cfg.eval_every  # one grid for all runs
                if self.evaluate():
                    return "target"
                if out_of_samples or out_of_time:
                    return "max_samples" if out_of_samples else "max_seconds"

    def log_interval(self, losses: list[float]) -> bool:
        """Log training metrics; on a spike restore the best state and return False."""
        cfg, step = self.cfg, self.step
        rows = step.timer.collect()
        self.phase_rows.extend(rows)
        interval_loss = sum(losses) / len(losses)
        spiked = not math.isfinite(interval_loss) or (
            self.loss_avg is not None and interval_loss > cfg.spike_factor * self.loss_avg + SPIKE_MARGIN)
        if spiked:
            self.restarts += 1
            self.logger.log({"restarts": self.restarts}, step.samples)
            if self.restarts > cfg.max_restarts:
                raise TrainingDiverged(f"loss diverged ({interval_loss:.4g}) after {cfg.max_restarts} restarts")
            step.restore(self.best_state)
            step.lr_scale *= cfg.restart_lr_factor
            self.loss_avg = None
            return False
        self.loss_avg = interval_loss if self.loss_avg is None else 0.9 * self.loss_avg + 0.1 * interval_loss
        metrics = {"train_loss": interval_loss, "lr": step.learning_rate()}
        if rows:
            elapsed = sum(r["step"] for r in rows) / 1000.0
            metrics["samples_per_s"] = len(rows) * cfg.batch_size / max(elapsed, 1e-9)
            means = mean_phases(rows)
            metrics.update({f"{phase}_ms": means[phase] for phase in PHASES})
        self.logger.log(metrics, step.samples)
        return True

    def evaluate(self) -> bool:
        """Evaluate the averaged model, keep the best state, report; True once the target is reached."""
        step = self.step
        eval_start = time.perf_counter()
        metrics = evaluate(step.eval_model, [self.held_out], autocast=step.autocast())
        if self.long is not None:
            metrics["length_exact_match"] = evaluate(step.eval_model, [self.long], autocast=step.autocast(),
                                                     steps=self.long_steps)["exact_match"]
        if (metrics["exact_match"], -metrics["loss"]) > (self.best["exact_match"], -self.best["loss"]):
            self.best, self.best_samples, self.best_state = dict(metrics), step.samples, step.state()
        reached = metrics["exact_match"] >= self.cfg.target
        if reached and self.cfg.exhaustive_check:
            reached = step.samples >= self.next_check and self.check_every_problem(metrics)
        self.eval_seconds += time.perf_counter() - eval_start
        elapsed = time.perf_counter() - self.start
        if reached and self.samples_to_target is None:
            self.samples_to_target, self.seconds_to_target = step.samples, elapsed
        self.history.append({"samples": step.samples, "seconds": elapsed, **metrics})
        self.logger.log({f"eval_{k}": v for k, v in metrics.items()}, step.samples)
        if self.on_eval is not None:
            self.on_eval(step.samples, metrics)
        return reached

    def check_every_problem(self, metrics: dict) -> bool:
        """Score every problem (`find_wrong`); if all are right, this state becomes the best one."""
        step, start = self.step, time.perf_counter()
        workers = torch.get_num_threads() if self.device.type == "cpu" else 1
        wrong = find_wrong(step.eval_model, step.task, workers=workers, suspects=self.suspects)
        self.exhaustive_checks += 1
        self.exhaustive_check_seconds += time.perf_counter() - start
        self.exhaustive = not wrong.numel()
        metrics["exhaustive"] = float(self.exhaustive)
        if self.exhaustive:  # the state that passed is the one to keep, whatever its held-out loss
            self.best, self.best_samples, self.best_state = dict(metrics), step.samples, step.state()
        else:  # tried first at the next check: a problem still wrong fails it at once
            self.next_check, self.check_gap = step.samples + self.check_gap, 2 * self.check_gap
            earlier = [] if self.suspects is None else [self.suspects]
            self.suspects = torch.cat([wrong.cpu(), *earlier])[:SUSPECTS]
            self.exhaustive_wrong.append(step.task.show(wrong[0].tolist()))
        return self.exhaustive

    def result(self, steps: int, stop_reason: str, train_seconds: float) -> TrainResult:
        step, best = self.step, self.best
        step.restore(self.best_state)
        timing = mean_phases(self.phase_rows)
        return TrainResult(
            task=self.cfg.task, exact_match=best["exact_match"], token_accuracy=best["token_accuracy"],
            length_exact_match=best.get("length_exact_match", 0.0), loss=best["loss"],
            samples=step.samples, steps=steps, train_seconds=train_seconds, eval_seconds=self.eval_seconds,
            data_ms=timing["data"], forward_ms=timing["forward"], backward_ms=timing["backward"],
            step_ms=timing["step"], restarts=self.restarts, stop_reason=stop_reason,
            exhaustive=self.exhaustive, exhaustive_checks=self.exhaustive_checks,
            exhaustive_check_seconds=self.exhaustive_check_seconds, exhaustive_wrong=self.exhaustive_wrong,
            best_samples=self.best_samples,
            samples_to_target=self.samples_to_target,
            seconds_to_target=self.seconds_to_target, params=step.model.num_params(), device=str(self.device),
            cuda_graph=step.graphs is not None, history=self.history,
            state_dict={k: v.detach().cpu().clone() for k, v in self.best_state["eval_model"].items()},
            model_config=step.model_config.to_dict(),
        )
