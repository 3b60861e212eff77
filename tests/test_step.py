"""One training step's own guarantees, a step or two each: `pytest tests/test_step.py`."""

import pytest
import torch

from tests.conftest import tiny_train
from thinker.training import TrainStep


@pytest.fixture(autouse=True)
def _no_memory_check(monkeypatch):
    """The CPU memory check is not what is tested here, and its meta pass costs a fresh process half a second."""
    monkeypatch.setattr("thinker.training.step.check_fits", lambda *args, **kwargs: None)


def applied_gradient(clip_norm: float) -> torch.Tensor:
    """The gradient the optimizer applied in a tiny run's first step, as one vector (a step leaves it on the
    parameters until the next one zeroes it). The same seed every time: the same batch and weights."""
    step = TrainStep(tiny_train(clip_norm=clip_norm), torch.device("cpu"))
    step()
    return torch.cat([p.grad.flatten() for p in step.model.parameters() if p.grad is not None])


def test_the_update_clips_the_gradient_to_clip_norm():
    clip = 1e-3
    raw, clipped = applied_gradient(0), applied_gradient(clip)  # 0: clipping off
    assert raw.norm() > 100 * clip  # a gradient far above the clip: what clipping is there for
    assert clipped.norm().item() == pytest.approx(clip, rel=1e-3)
    torch.testing.assert_close(clipped, raw * (clip / raw.norm()), rtol=1e-3, atol=1e-9)  # scaled, not turned
