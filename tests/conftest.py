"""Shared fixtures: tiny presets that train in seconds on a CPU.

    pytest -q
"""

import pytest
import torch

from thinker.model import ThinkerConfig
from thinker.training import TrainConfig

TINY_MODEL = dict(vocab_size=20, max_len=16, d_model=32, n_heads=2, n_layers=1, latent=4, steps=4)


def tiny_train(**overrides) -> TrainConfig:
    """A copy run that reaches 100% in a few seconds on one CPU core."""
    values = dict(task="copy", task_options={"alphabet": 5, "length": 4}, d_model=32, n_heads=2,
                  n_layers=1, latent=2, steps=1, batch_size=64, lr=3e-3, max_samples=40_000,
                  eval_every=4096, eval_size=256, long_eval_size=64, target=1.0, device="cpu")
    values.update(overrides)
    return TrainConfig.from_dict(values)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # small tensors: threads cost more than they give, and CI has 2 cores
    yield


@pytest.fixture
def tiny_model_config() -> ThinkerConfig:
    return ThinkerConfig(**TINY_MODEL)
