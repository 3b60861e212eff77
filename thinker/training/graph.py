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
"""

from __future__ import annotations

import torch
from torch.profiler import record_function


class StepGraphs:
    """The three captured phases of one `TrainStep` and the static tensors they read and write."""

    def __init__(self, step) -> None:
        stream, device = step.capture_stream, step.device
        pool = torch.cuda.graph_pool_handle()
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
