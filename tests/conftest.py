"""Shared fixtures: tiny presets that train in seconds on a CPU.

    pytest -q
"""

import ast
import importlib.util

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


SWEEP_STACK = ("optuna", "mlflow")
NEEDS_SWEEP_STACK = (*SWEEP_STACK, "thinker.sweeps", "tests.sweep_support")


def installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def pytest_ignore_collect(collection_path, config):
    """Without Optuna or MLflow (a bare GPU box running `pytest -m gpu` from a checkout), a test module
    that imports them at its top is left out, rather than failing the collection of every other test."""
    if collection_path.suffix != ".py" or all(installed(name) for name in SWEEP_STACK):
        return None
    tree = ast.parse(collection_path.read_text())
    names = [alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names]
    names += [node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module]
    return any(n == m or n.startswith(m + ".") for n in names for m in NEEDS_SWEEP_STACK) or None


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # small tensors: threads cost more than they give, and CI has 2 cores
    yield


@pytest.fixture
def tiny_model_config() -> ThinkerConfig:
    return ThinkerConfig(**TINY_MODEL)
