"""Training, one job per file, read in the order data flows:

- `config`: `TrainConfig`, one object from the CLI or a sweep trial, the model's config nested in it
- `step`: `TrainStep`, one optimizer step (data, forward+loss, backward+optimizer, weight average)
- `timing`: `PhaseTimer`, the step's phases without a sync per step
- `evaluation`: exact match and token accuracy on fixed held-out problems
- `loop`: `train()`, log intervals, evaluations, restarts from the best state, `TrainResult`
- `checkpoint`: model.pt, config.json and result.json of a finished run, and loading them back
"""

from thinker.training.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from thinker.training.config import TrainConfig
from thinker.training.evaluation import evaluate
from thinker.training.loop import TrainingDiverged, TrainResult, train
from thinker.training.step import TrainStep
from thinker.training.timing import PHASES

__all__ = ["PHASES", "Checkpoint", "CheckpointError", "TrainConfig", "TrainResult", "TrainStep", "TrainingDiverged",
           "evaluate", "load_checkpoint", "save_checkpoint", "train"]
