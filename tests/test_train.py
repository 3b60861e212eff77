"""Trainer behaviour on tiny presets (seconds on a CPU): `pytest tests/test_train.py`."""

import math

import pytest
import torch

from tests.conftest import tiny_train
from thinker.logger import MemoryLogger
from thinker.train import PHASES, StepRunner, TrainConfig, TrainingDiverged, train


def test_copy_learns_to_100_percent():
    result = train(tiny_train())
    assert result.exact_match == 1.0
    assert result.stop_reason == "target"
    assert result.samples_to_target == result.samples < 40_000


def test_same_seed_same_losses():
    def losses(seed):
        logger = MemoryLogger()
        train(tiny_train(max_samples=2048, eval_every=1024, seed=seed, log_every=4), logger)
        return [v for _, v in logger.series("train_loss")]

    first = losses(0)
    assert first == losses(0)
    assert first != losses(1)


def test_phases_add_up_to_the_step():
    result = train(tiny_train(max_samples=2048))
    assert result.data_ms > 0 and result.forward_ms > 0 and result.backward_ms > 0
    assert math.isclose(result.data_ms + result.forward_ms + result.backward_ms, result.step_ms, rel_tol=1e-6)


def test_logger_gets_curves_stepped_by_samples():
    logger = MemoryLogger()
    train(tiny_train(max_samples=4096, eval_every=1024, target=2.0), logger)
    steps = [s for s, _ in logger.series("eval_exact_match")]
    assert steps == [1024, 2048, 3072, 4096]
    for name in ("eval_loss", "eval_token_accuracy", "eval_length_exact_match", "train_loss", "lr",
                 "samples_per_s", *(f"{p}_ms" for p in PHASES)):
        assert logger.series(name), name


def test_restore_brings_back_model_and_optimizer_state():
    runner = StepRunner(tiny_train())
    runner.step()
    saved = runner.state()
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    for _ in range(3):
        runner.step()
    assert any(not torch.equal(before[k], v) for k, v in runner.model.state_dict().items())
    runner.restore(saved)
    for k, v in runner.model.state_dict().items():
        assert torch.equal(before[k], v)
    exp_avg = [s["exp_avg"] for s in runner.optimizer.state_dict()["state"].values()]
    assert all(torch.equal(a, b["exp_avg"]) for a, b in zip(exp_avg, saved["optimizer"]["state"].values()))


def test_nan_loss_restarts_from_best_and_recovers():
    logger = MemoryLogger()
    result = train(tiny_train(fault="nan@1024", eval_every=512, log_every=2), logger)
    assert result.restarts == 1
    assert [v for _, v in logger.series("restarts")] == [1]
    assert all(torch.isfinite(v).all() for v in result.state_dict.values())
    assert result.exact_match == 1.0


def test_persistent_divergence_gives_up():
    cfg = tiny_train(lr=1e6, clip_norm=0, max_restarts=1, restart_lr_factor=1.0, spike_factor=1.01)
    with pytest.raises(TrainingDiverged):
        train(cfg)


def test_injected_error_propagates():
    with pytest.raises(RuntimeError, match="injected fault"):
        train(tiny_train(fault="error@1024"))


def test_on_eval_hook_can_stop_training():
    class Stop(Exception):
        pass

    seen = []

    def hook(samples, metrics):
        seen.append((samples, metrics["exact_match"]))
        if len(seen) == 2:
            raise Stop

    with pytest.raises(Stop):
        train(tiny_train(eval_every=1024), on_eval=hook)
    assert [s for s, _ in seen] == [1024, 2048]


def test_time_budget_stops_training():
    result = train(tiny_train(max_samples=10**9, max_seconds=1.0, target=2.0))
    assert result.stop_reason == "max_seconds"
    assert result.train_seconds < 10


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(lr=0.0), dict(lr=-1.0), dict(latent=-1),
                                 dict(steps=0), dict(precision="fp8"), dict(fault="boom")])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown config key"):
        TrainConfig.from_dict({"task": "copy", "learning_rate": 0.1})
