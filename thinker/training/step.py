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
import random
import warnings
from collections.abc import Callable

import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from torch.profiler import record_function

from thinker.model import Thinker
from thinker.tasks import make_task
from thinker.training.config import TrainConfig
from thinker.training.loss import masked_loss
from thinker.training.memory import check_fits
from thinker.training.timing import PhaseTimer

# (samples seen, loss) -> loss: lets tests poison or break a step; None in every real run
LossHook = Callable[[int, torch.Tensor], torch.Tensor]
GRAPH_WARMUP = 3  # eager steps before a CUDA-graph capture: optimizer state, cuBLAS and the allocator settle


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

    `advance()` (host side: the update count and this step's weight) and `blend()` (device side) are
    apart so that a captured CUDA graph can replay `blend` with the weight in a device tensor.
    """

    def __init__(self, model: torch.nn.Module, decay: float, weight_on_device: bool = False) -> None:
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.flat = parameters_to_vector(self.model.parameters()).detach().clone()
        vector_to_parameters(self.flat, self.model.parameters())  # parameters become views of `flat`
        self.weight: float | torch.Tensor = torch.zeros((), device=self.flat.device) if weight_on_device else 0.0

    def advance(self) -> None:
        self.updates += 1
        weight = 1.0 - min(self.decay, (1 + self.updates) / (10 + self.updates))
        if isinstance(self.weight, torch.Tensor):
            self.weight.fill_(weight)
        else:
            self.weight = weight

    @torch.no_grad()
    def blend(self, model: torch.nn.Module) -> None:
        self.flat.lerp_(parameters_to_vector(model.parameters()), self.weight)


class TrainStep:
    """Owns the task, model, optimizer, data generator and timer of one run; calling it trains one step.

    On CUDA (`cfg.cuda_graph`, the default) the first `GRAPH_WARMUP` steps run eagerly on the capture
    stream, then the three phases are captured as CUDA graphs (`thinker.training.graph.StepGraphs`)
    and every later call replays them. The learning rate and the averaging weight then live in device
    tensors the host fills before each update, so the schedule changes without a recapture. Eager
    steps and replays run the same three methods: `draw`, `loss` and `update`.
    """

    def __init__(self, cfg: TrainConfig, device: torch.device, fused: bool | None = None) -> None:
        self.cfg, self.device = cfg, device
        self.task = make_task(cfg.task, **cfg.task_options)
        check_fits(cfg, device, task=self.task)  # on a CPU, before the out-of-memory killer would find out
        self.model_config = cfg.model_config(self.task)
        with seeded(cfg.seed, device):
            self.model = Thinker(self.model_config).to(device)
        self.graphed = cfg.cuda_graph and device.type == "cuda" and not cfg.compile and not cfg.min_steps  # fixed steps
        fused = (device.type == "cuda" if fused is None else fused) or self.graphed
        self.lr = torch.tensor(cfg.lr, device=device) if self.graphed else None  # shared by every group
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg.weight_decay),
                                           lr=cfg.lr if self.lr is None else self.lr, betas=(0.9, cfg.beta2),
                                           fused=fused, capturable=self.graphed)
        self.generator = torch.Generator(device).manual_seed(cfg.seed)
        self.step_counts = random.Random(cfg.seed)  # thinking steps per batch, with min_steps: no device sync
        # On a GPU, draw batches without data-dependent shapes: no host synchronisation per step.
        self.fixed_shape = device.type == "cuda"
        self.timer = PhaseTimer(device)
        # what the loss runs: the model, or with deep supervision its logits after every step
        logits = self.model.logits_per_step if cfg.deep_supervision else self.model
        self.logits = torch.compile(logits) if cfg.compile else logits
        self.average = WeightAverage(self.model, cfg.ema, weight_on_device=self.graphed) if cfg.ema else None
        self.samples, self.steps, self.lr_scale = 0, 0, 1.0
        self.loss_hook: LossHook | None = None
        self.graphs = None  # StepGraphs, once captured
        self.graph_error: str | None = None  # why the step is not captured, if it is not
        self.capture_stream = torch.cuda.Stream(device) if self.graphed else None

    def autocast(self):
        if self.cfg.precision == "bf16":
            # the autocast weight cache cannot live across graph replays
            return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=not self.graphed)
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

    # -- the three phases: what an eager step runs and what the graphs capture --
    def draw(self):
        return self.task.sample(self.cfg.batch_size, self.generator, fixed_shape=self.fixed_shape)

    def loss(self, batch) -> torch.Tensor:
        """Cross-entropy at the answer (and scratch) slots; with deep supervision, the mean over steps."""
        self.model.train()
        with self.autocast():
            # only the answer slots' logits, computed from one position layout for the batch: (B, A, vocab)
            # with feedback, later steps read the true scratch back (teacher forcing)
            scratch = batch.targets if self.model_config.feedback else None
            steps = self.step_counts.randint(self.cfg.min_steps, self.cfg.model.steps) if self.cfg.min_steps else None
            logits = self.logits(batch.inputs, steps, shared_layout=True, tail=batch.answers, scratch=scratch)
        per_step = logits if self.cfg.deep_supervision else [logits]
        targets = batch.targets[:, -batch.answers:]
        loss = sum(masked_loss(step_logits, targets) for step_logits in per_step) / len(per_step)
        if self.loss_hook is not None:
            loss = self.loss_hook(self.samples, loss)
        return loss

    def schedule(self) -> None:
        """The host side of an update: this step's learning rate and averaging weight."""
        lr = self.learning_rate()
        if self.lr is not None:
            self.lr.fill_(lr)
        else:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        if self.average is not None:
            self.average.advance()

    def update(self, loss: torch.Tensor) -> None:
        """Backward, clipping, AdamW and the weight average (gradients must be None on entry)."""
        loss.backward()
        if self.cfg.clip_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
        self.optimizer.step()
        if self.average is not None:
            self.average.blend(self.model)

    def __call__(self) -> torch.Tensor:
        """Run one step; returns the loss as a detached device tensor (reading it is a sync).

        The phases carry `record_function` labels, so a torch.profiler trace shows them by name.
        """
        if self.graphs is None and self.graphed and self.steps >= GRAPH_WARMUP and self.loss_hook is None:
            self.capture()
        if self.graphs is not None:
            loss = self.graphs.replay(self)
        else:
            with self.on_capture_stream(), self.checking_syncs():
                loss = self.eager()
        self.samples += self.cfg.batch_size
        self.steps += 1
        return loss

    def eager(self) -> torch.Tensor:
        timer = self.timer
        timer.start()
        with record_function("data"):
            batch = self.draw()
        timer.mark()
        with record_function("forward"):
            loss = self.loss(batch)
        timer.mark()
        with record_function("backward"):
            self.schedule()
            self.optimizer.zero_grad(set_to_none=True)
            with self.quiet_uncaptured():
                self.update(loss)
        timer.mark()
        return loss.detach()

    @contextlib.contextmanager
    def quiet_uncaptured(self):
        """A capturable optimizer warns whenever it steps outside a capture: expected before the capture."""
        if self.lr is None:
            yield
            return
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            yield

    @contextlib.contextmanager
    def on_capture_stream(self):
        """The warm-up steps before a capture run on the stream the capture will use (as CUDA asks)."""
        if self.graphs is not None or not self.graphed:
            yield
            return
        main = torch.cuda.current_stream(self.device)
        self.capture_stream.wait_stream(main)
        with torch.cuda.stream(self.capture_stream):
            yield
        main.wait_stream(self.capture_stream)

    def checking_syncs(self):
        """The last warm-up step before a capture: a host sync found there means no capture is tried."""
        if not (self.graphed and self.steps == GRAPH_WARMUP - 1 and self.loss_hook is None):
            return contextlib.nullcontext()
        from thinker.training.graph import refusing_syncs  # noqa: PLC0415 - CUDA only

        return refusing_syncs(self)

    def capture(self) -> None:
        """Capture the phases as CUDA graphs; on failure say why once and keep stepping eagerly."""
        from thinker.training.graph import CaptureFailed, capture  # noqa: PLC0415 - CUDA only

        try:
            self.graphs = capture(self)
        except CaptureFailed as e:
            self.optimizer.zero_grad(set_to_none=True)
            self.no_capture(f"the capture failed: {e}")

    def no_capture(self, why: str) -> None:
        """Give up CUDA graphs for this step, saying why once: it trains on with eager steps."""
        self.graphs, self.graphed, self.graph_error = None, False, why
        warnings.warn(f"no CUDA graphs ({why}); training on with eager steps", RuntimeWarning, stacklevel=3)

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
        """Put a `state()` back, copying into the live tensors: captured graphs hold their addresses."""
        self.model.load_state_dict(state["model"])
        self.eval_model.load_state_dict(state["eval_model"])
        if self.lr is None:
            self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        else:
            load_in_place(self.optimizer, state["optimizer"])


def load_in_place(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Copy an optimizer `state_dict()` into the optimizer's own state tensors (and leave its learning-rate
    tensor in place); a parameter without saved state gets a fresh one (zeros, step 0)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, param in enumerate(params):
        old = saved["state"].get(index)
        live = optimizer.state.get(param)
        if not live:
            if old is not None:
                optimizer.state[param] = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in old.items()}
            continue
        with torch.no_grad():
            for key, tensor in live.items():
                if not isinstance(tensor, torch.Tensor):
                    continue
                if old is None:
                    tensor.zero_()
                else:
                    tensor.copy_(old[key])
