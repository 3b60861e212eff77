"""What a CUDA graph needs from a training step, checked on the CPU for every task.

A captured graph replays the kernels of one step with the arguments they had at capture: a Python
number that changes from step to step (a learning rate as a float, a shape that depends on the data)
stays frozen at its first value, and an op whose output size depends on the data (boolean masks,
`nonzero`, `.item()`) synchronises host and device, which a capture refuses. On a GPU the `gpu`-marked
tests in test_train.py run the real thing; here every op a steady-state step dispatches is recorded
(op, tensor shapes and dtypes, every non-tensor argument) and two consecutive steps must match op for
op, with none of the synchronising ops (or copies of Python data) among them.
"""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten

from thinker.tasks import TASKS
from thinker.training import TrainConfig
from thinker.training.step import GRAPH_WARMUP, TrainStep

# aten ops whose result the host must see before it can go on (a value or a data-dependent shape)
SYNCING = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique", "_unique2",
           "unique_consecutive", "unique_dim", "bincount", "equal", "allclose"}
# a tensor made from Python data: on CUDA a copy from pageable host memory, which a capture refuses
FROM_HOST = {"lift_fresh", "lift_fresh_copy"}
MASKABLE = {"index", "index_put", "index_put_", "_index_put_impl_"}  # a boolean index is a `nonzero`
HOST_READS = {"tolist", "numpy", "cpu", "item", "__bool__"}  # Tensor methods that read a value back
PLAIN = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.layout, torch.memory_format)


def masked(indices) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices)


def describe(value):
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype)
    return value if isinstance(value, PLAIN) else type(value).__name__


class OpTrace(TorchDispatchMode):
    """Every aten op dispatched inside, as (name, described arguments)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, tuple]] = []
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        name = func.overloadpacket.__name__
        self.ops.append((name, tuple(describe(a) for a in flat)))
        if name in SYNCING:
            self.syncs.append(name)
        elif name in FROM_HOST:
            self.syncs.append(f"{name} (a tensor from Python data)")
        elif name in MASKABLE and masked(args[1]):
            self.syncs.append(f"{name} with a boolean mask")
        elif name == "repeat_interleave" and func._overloadname != "self_int" and kwargs.get("output_size") is None:
            self.syncs.append("repeat_interleave without output_size")
        return func(*args, **kwargs)


class HostReads(TorchFunctionMode):
    """Tensor methods that copy a value to the host; on a CPU tensor they dispatch no aten op."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_READS:
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


def syncs(trace: OpTrace, reads: HostReads) -> list[str]:
    return trace.syncs + reads.calls


def graph_ready(task: str, **overrides) -> TrainStep:
    """A CPU step set up as a captured CUDA step runs: batches of a fixed shape, the learning rate and the
    averaging weight in tensors, a fused AdamW (whose kernel takes the step counts as tensors)."""
    cfg = TrainConfig.for_task(task, device="cpu", batch_size=16, d_model=32, n_heads=2, **overrides)
    step = TrainStep(cfg, torch.device("cpu"), fused=True)
    step.fixed_shape = True
    step.lr = torch.tensor(cfg.lr)
    for group in step.optimizer.param_groups:
        group["lr"] = step.lr
    if step.average is not None:
        step.average.weight = torch.zeros(())
    return step


def traced_step(step: TrainStep) -> tuple[OpTrace, HostReads]:
    """One step's ops, without `schedule` (the host side that runs between graph replays)."""
    schedule = step.schedule

    def host_side() -> None:
        with _disable_current_modes():
            schedule()

    step.schedule = host_side
    trace, reads = OpTrace(), HostReads()
    try:
        with reads, trace:
            step()
    finally:
        del step.schedule
    return trace, reads


def steady_traces(step: TrainStep) -> tuple[tuple[OpTrace, HostReads], tuple[OpTrace, HostReads]]:
    for _ in range(GRAPH_WARMUP):
        step()
    return traced_step(step), traced_step(step)


@pytest.mark.parametrize("task, overrides", [(task, {}) for task in sorted(TASKS)] +
                         [("addition", {"precision": "bf16"}), ("addition", {"attention": "sdpa"})])
def test_steady_steps_replay_identically_and_never_read_back(task, overrides):
    """With each task's own defaults (multiply's read-back and per-step losses, addition's jitter), in
    bf16, and with the fused attention GPUs run."""
    (first, first_reads), (second, second_reads) = steady_traces(graph_ready(task, **overrides))
    assert syncs(first, first_reads) == [] and syncs(second, second_reads) == []
    assert len(first.ops) > 100
    mismatch = next((i for i, (a, b) in enumerate(zip(first.ops, second.ops)) if a != b), None)
    assert mismatch is None and len(first.ops) == len(second.ops), \
        f"step ops differ at {mismatch}: {first.ops[mismatch]} vs {second.ops[mismatch]}"


def test_the_check_sees_a_float_learning_rate_and_a_masked_draw():
    """The eager CPU step, as it is: a learning rate in a float (frozen by a graph) and held-out
    problems dropped with a boolean mask (a sync); the check above must catch both."""
    step = TrainStep(TrainConfig.for_task("addition", device="cpu", batch_size=16, d_model=32, n_heads=2),
                     torch.device("cpu"), fused=True)
    (first, first_reads), (second, _) = steady_traces(step)
    assert any(name == "_fused_adamw_" and a != b for (name, a), (_, b) in zip(first.ops, second.ops))
    assert "index with a boolean mask" in syncs(first, first_reads)
