"""A training step replayed as three CUDA graphs: data, forward+loss, update.

    graphs = StepGraphs(step)   # after a few eager steps (TrainStep does this itself)
    loss = graphs.replay(step)  # three graph launches instead of hundreds of kernel launches

Each phase is captured once, into one shared memory pool, from the very methods an eager step runs
(`TrainStep.draw`, `.loss`, `.update`): the batch, the loss, the autograd graph's saved tensors and
the gradients get fixed addresses, and every replay recomputes them in place. What changes from
step to step without a recapture:

- the data: the step's own generator is registered with the data graph, so each replay advances it
  exactly as an eager draw would; dropout and position jitter use the default CUDA generator, which
  every capture registers by itself;
- the learning rate and the weight average's blend weight: device tensors the host fills before
  the update graph runs (`TrainStep.schedule`);
- the weights and the optimizer state after a restart from the best state: `TrainStep.restore`
  copies into the live tensors rather than replacing them.

Three graphs rather than one keep the per-phase timing the trainer logs (CUDA events between the
replays) for the price of two extra launches per step.

A capture can fail (an op that synchronises with the host, one CUDA cannot capture). Two guards keep
such a trial training, eagerly: the last warm-up step runs under torch's sync debug mode
(`host_syncs`), so a host synchronisation is found before any capture starts; and a capture that
fails anyway is undone (`capture`): the current stream, the memory pool and the random generators
are put back as they were, so eager steps, and later captures in the same process, work.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch.profiler import record_function


class CaptureFailed(RuntimeError):
    """A capture failed and was undone; the message names the real cause."""


def capture(step) -> StepGraphs:
    """`StepGraphs(step)`, or, when the capture fails, CaptureFailed after the CUDA state is put back.

    torch's `graph` context does not unwind a failed capture: when `capture_end` raises, the current
    stream stays the capture stream and the generators registered with the graph stay in capture mode,
    so the next eager random draw fails ("Offset increment outside graph capture").
    """
    device = step.device
    stream = torch.cuda.current_stream(device)
    pool = torch.cuda.graph_pool_handle()
    try:
        return StepGraphs(step, pool)
    except Exception as e:  # noqa: BLE001 - any failure: undo it, then say what it was
        cause = root_cause(e)
        torch.cuda.set_stream(stream)
        _end_pool(device, pool)
        _reset_generators(step)
        raise CaptureFailed(f"{type(cause).__name__}: {first_line(cause)}") from e


def root_cause(error: BaseException) -> BaseException:
    """The error that broke a capture: torch reports it as "operation failed due to a previous error
    during capture" and keeps the first one as that exception's context."""
    while error.__context__ is not None and "previous error during capture" in str(error):
        error = error.__context__
    return error


def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else ""


def _end_pool(device: torch.device, pool) -> None:
    """Stop routing the capture stream's allocations to the failed graph's pool (best effort: private API)."""
    end = getattr(torch._C, "_cuda_endAllocateToPool", None) or getattr(
        torch._C, "_cuda_endAllocateCurrentStreamToPool", None)
    if end is not None:
        with contextlib.suppress(Exception):
            end(device.index if device.index is not None else torch.cuda.current_device(), pool)


def _reset_generators(step) -> None:
    """Take the step's generator and the default CUDA one out of capture mode: one trivial capture
    that registers the same generators and ends cleanly runs their capture epilogue."""
    torch.cuda.synchronize(step.device)
    graph = torch.cuda.CUDAGraph()
    graph.register_generator_state(step.generator)
    scratch = torch.zeros(1, device=step.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.cuda.graph(graph, stream=torch.cuda.Stream(step.device)):
            scratch.add_(1)
    torch.cuda.synchronize(step.device)
    del graph


@contextlib.contextmanager
def refusing_syncs(step):
    """Run the block (the last warm-up step) watching for host synchronisations: if there is one, the
    step gives up its capture before trying it, since it would fail inside the capture."""
    found: list[str] = []
    with host_syncs(found):
        yield
    if found:
        step.no_capture(f"the step synchronises with the host: {found[0]}")


@contextlib.contextmanager
def host_syncs(found: list[str]):
    """Run the block under torch's sync debug mode ("warn") and append where each host synchronisation
    happened to `found`: the step they come from cannot be captured, and is better not tried."""
    before = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode(before)
    for w in caught:
        if "synchroniz" in str(w.message):
            found.append(f"{first_line(w.message)} ({w.filename}:{w.lineno})")
        else:  # the block's other warnings, passed on
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


class StepGraphs:
    """The three captured phases of one `TrainStep` and the static tensors they read and write."""

    def __init__(self, step, pool=None) -> None:
        stream, device = step.capture_stream, step.device
        pool = torch.cuda.graph_pool_handle() if pool is None else pool
        self.data, self.forward, self.update = (torch.cuda.CUDAGraph() for _ in range(3))
        self.data.register_generator_state(step.generator)
        torch.cuda.synchronize(device)
        with torch.cuda.graph(self.data, pool=pool, stream=stream):
            self.batch = step.draw()
        with torch.cuda.graph(self.forward, pool=pool, stream=stream):
            self.loss = step.loss(self.batch)
        step.optimizer.zero_grad(set_to_none=True)  # the update graph's backward allocates the gradients
        with torch.cuda.graph(self.update, pool=pool, stream=stream):
            step.update(self.loss)
        torch.cuda.synchronize(device)

    def replay(self, step) -> torch.Tensor:
        """One training step; the loss as a new device tensor (the static one is overwritten next step)."""
        timer = step.timer
        timer.start()
        with record_function("data"):
            self.data.replay()
        timer.mark()
        with record_function("forward"):
            self.forward.replay()
        timer.mark()
        with record_function("backward"):
            step.schedule()
            self.update.replay()
        timer.mark()
        return self.loss.detach().clone()
