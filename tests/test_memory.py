"""A CPU run too large for memory is one line and exit 2 before anything is allocated, not a process the
kernel's out-of-memory killer ends; and the floor the check uses is one, counted as a real step counts."""

import pytest
import torch
from typer.testing import CliRunner

from tests.conftest import tiny_train
from thinker.bench.suite import run_suite
from thinker.cli import app
from thinker.training import TrainConfig, TrainStep
from thinker.training.memory import WontFit, check_fits, least_bytes

GIB = 2**30


def saved_bytes_of_a_real_step(cfg: TrainConfig) -> int:
    """What autograd keeps from one CPU forward pass of a real TrainStep, counted like `least_bytes` counts."""
    step = TrainStep(cfg, torch.device("cpu"))
    seen = {p.untyped_storage().data_ptr() for p in step.model.parameters()}
    kept = []

    def count(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            kept.append(tensor)
        return tensor

    batch = step.draw()
    with torch.autograd.graph.saved_tensors_hooks(count, lambda t: t):
        step.loss(batch)
    return sum(t.untyped_storage().nbytes() for t in kept)


@pytest.mark.parametrize("overrides", [
    {},
    {"batch_size": 96, "steps": 3, "latent": 3},
    {"task": "addition", "task_options": {}, "steps": 2, "n_layers": 2},
    {"task": "multiply", "task_options": {}, "steps": 2, "deep_supervision": True, "feedback": True},
], ids=["copy", "three-steps", "addition", "multiply-feedback"])
def test_the_meta_count_is_what_a_real_cpu_step_keeps_for_its_backward_pass(overrides):
    cfg = tiny_train(**overrides)
    needed = least_bytes(cfg)
    assert needed.activations == saved_bytes_of_a_real_step(cfg) > 0
    params = sum(p.numel() for p in TrainStep(cfg, torch.device("cpu")).model.parameters())
    assert needed.weights == 4 * 4 * params
    assert needed.total == needed.weights + needed.activations + needed.eval_sets


def test_the_floor_grows_with_the_batch_and_moves_no_random_generator():
    state = torch.get_rng_state()
    small, large = least_bytes(tiny_train(batch_size=64)), least_bytes(tiny_train(batch_size=6400))
    assert torch.equal(torch.get_rng_state(), state)
    assert 90 * small.activations < large.activations < 101 * small.activations
    assert small.weights == large.weights


def test_a_run_is_refused_by_one_byte_too_few_and_counting_stops_once_past_the_memory_there_is():
    cfg = tiny_train(batch_size=4096)
    needed = least_bytes(cfg).total
    check_fits(cfg, torch.device("cpu"), available=needed)  # exactly enough passes
    with pytest.raises(WontFit, match=r"^batch_size 4096, steps 1, d_model 32: this run needs more memory than the "
                                      r"0\.\d+ GiB this machine has available: one forward pass alone keeps more"):
        check_fits(cfg, torch.device("cpu"), available=needed - 1)
    stopped = least_bytes(tiny_train(batch_size=10**9), limit=GIB)
    assert stopped.activations is None and stopped.total is None


def test_weights_that_cannot_fit_are_refused_before_any_forward_pass():
    with pytest.raises(WontFit, match=r"d_model 100000: this run needs at least 1,7\d\d GiB of memory before its "
                                      r"first step \(1,7\d\d GiB of weights and optimizer state, 0.000 GiB of "
                                      r"evaluation problems\); this machine has 1.0 GiB available"):
        check_fits(tiny_train(d_model=100_000, n_heads=2), torch.device("cpu"), available=GIB)


def test_other_devices_are_not_checked():
    check_fits(tiny_train(batch_size=10**9), torch.device("meta"), available=0)


def test_train_with_a_batch_no_machine_holds_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "never"
    result = CliRunner().invoke(app, ["train", "addition", "--batch-size", "1000000000", "--device", "cpu",
                                      "--out", str(out)])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()  # the error alone: no device line, no progress bar before it
    assert line.startswith("thinker: error: batch_size 1000000000, steps 2, d_model 64: this run needs more memory")
    assert "Traceback" not in result.output and not out.exists()


def test_the_bench_scan_ends_at_a_batch_the_cpu_cannot_hold():
    cfg = tiny_train()
    rows, scan = run_suite(cfg, torch.device("cpu"), ["eager"], [128, 10**9, 256], warmup=1, iters=2,
                           peak_override=1.0)
    assert [(r["variant"], r["status"]) for r in rows] == [("eager", "ok"), ("batch=128", "ok"),
                                                           ("batch=1000000000", "oom")]
    assert scan["stopped"] == "oom at batch=1000000000"
