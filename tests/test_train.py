"""Trainer behaviour on tiny presets (seconds on a CPU): `pytest tests/test_train.py`."""

import pytest
import torch

from tests.conftest import tiny_train
from tests.faults import error, nan_once
from thinker.device import configure_torch
from thinker.errors import ConfigError
from thinker.logger import MemoryLogger
from thinker.training import PHASES, TrainConfig, TrainingDiverged, TrainStep, train
from thinker.training.step import GRAPH_WARMUP


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


def test_phase_timing_accounts_for_the_training_time():
    """The phases add up to the step by construction; what can fail is the step clock itself:
    steps x step time must be most of the training time outside evaluations, and never more."""
    result = train(tiny_train(max_samples=4096, eval_every=2048, target=2.0))
    assert result.data_ms > 0 and result.forward_ms > 0 and result.backward_ms > 0
    stepping = result.steps * result.step_ms / 1000
    assert 0.5 * (result.train_seconds - result.eval_seconds) < stepping < result.train_seconds


def test_logger_gets_curves_stepped_by_samples():
    logger = MemoryLogger()
    train(tiny_train(max_samples=4096, eval_every=1024, target=2.0), logger)
    steps = [s for s, _ in logger.series("eval_exact_match")]
    assert steps == [1024, 2048, 3072, 4096]
    for name in ("eval_loss", "eval_token_accuracy", "eval_length_exact_match", "train_loss", "lr",
                 "samples_per_s", *(f"{p}_ms" for p in PHASES)):
        assert logger.series(name), name


def test_restore_brings_back_model_average_and_optimizer_state():
    step = TrainStep(tiny_train(), torch.device("cpu"))
    step()
    saved = step.state()
    before = {k: v.clone() for k, v in step.model.state_dict().items()}
    averaged = {k: v.clone() for k, v in step.eval_model.state_dict().items()}
    for _ in range(3):
        step()
    assert any(not torch.equal(before[k], v) for k, v in step.model.state_dict().items())
    assert any(not torch.equal(averaged[k], v) for k, v in step.eval_model.state_dict().items())
    step.restore(saved)
    for k, v in step.model.state_dict().items():
        assert torch.equal(before[k], v)
    for k, v in step.eval_model.state_dict().items():
        assert torch.equal(averaged[k], v)
    exp_avg = [s["exp_avg"] for s in step.optimizer.state_dict()["state"].values()]
    assert all(torch.equal(a, b["exp_avg"]) for a, b in zip(exp_avg, saved["optimizer"]["state"].values()))


def test_weight_average_follows_the_model():
    """The averaged weights move towards the trained ones, step by step (views of one flat vector)."""
    step = TrainStep(tiny_train(), torch.device("cpu"))
    start = step.eval_model.head.weight.clone()
    for _ in range(20):
        step()
    moved = (step.eval_model.head.weight - start).norm()
    trained = (step.model.head.weight - start).norm()
    assert 0 < moved < trained


def test_building_a_step_touches_no_process_wide_switch():
    threads = torch.get_num_threads()
    rng = torch.get_rng_state()
    TrainStep(tiny_train(threads=2, seed=5), torch.device("cpu"))
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng)


def test_configure_torch_sets_threads_and_tf32():
    configure_torch(threads=2, precision="tf32")
    assert torch.get_num_threads() == 2 and torch.backends.cuda.matmul.allow_tf32
    configure_torch(threads=1)
    assert torch.get_num_threads() == 1 and not torch.backends.cuda.matmul.allow_tf32


def test_nan_loss_restarts_from_best_and_recovers():
    logger = MemoryLogger()
    result = train(tiny_train(eval_every=512, log_every=2), logger, loss_hook=nan_once(1024))
    assert result.restarts == 1
    assert [v for _, v in logger.series("restarts")] == [1]
    assert all(torch.isfinite(v).all() for v in result.state_dict.values())
    assert result.exact_match == 1.0


def test_persistent_divergence_gives_up():
    cfg = tiny_train(lr=1e6, clip_norm=0, max_restarts=1, restart_lr_factor=1.0, spike_factor=1.01)
    with pytest.raises(TrainingDiverged):
        train(cfg)


def test_error_in_a_step_propagates():
    with pytest.raises(RuntimeError, match="injected fault"):
        train(tiny_train(), loss_hook=error(1024))


def test_ctrl_c_after_an_evaluation_can_end_training_with_the_best_state():
    cfg = tiny_train(eval_every=1024, target=2.0)
    result = train(cfg, loss_hook=error(3000, KeyboardInterrupt), stop_on_interrupt=True)
    assert result.stop_reason == "interrupted" and result.samples == 3008
    assert result.best_samples in (1024, 2048) and [h["samples"] for h in result.history] == [1024, 2048]
    assert result.exact_match == max(h["exact_match"] for h in result.history) and result.state_dict
    with pytest.raises(KeyboardInterrupt):  # the sweep's way to stop a trial: it must still propagate
        train(cfg, loss_hook=error(3000, KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # nothing evaluated yet: nothing worth keeping
        train(cfg, loss_hook=error(512, KeyboardInterrupt), stop_on_interrupt=True)


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
                                 dict(steps=0), dict(precision="fp8"), dict(d_model=30, n_heads=4),
                                 dict(steps=2, min_steps=3), dict(min_steps=-1), dict(max_positions=-1)])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        TrainConfig.from_dict(bad)


def test_flat_dict_round_trip_nests_the_model_config():
    cfg = TrainConfig.from_dict({"task": "copy", "steps": 3, "d_model": 48, "lr": 1e-3})
    assert (cfg.model.steps, cfg.model.d_model, cfg.lr) == (3, 48, 1e-3)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert "vocab_size" not in cfg.to_dict()  # the task decides it


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown config key"):
        TrainConfig.from_dict({"task": "copy", "learning_rate": 0.1})


@pytest.mark.parametrize("deep_supervision", [False, True])
def test_compile_wraps_what_the_loss_runs(deep_supervision, monkeypatch):
    compiled, calls = [], []

    def fake_compile(fn):
        compiled.append(fn)
        return lambda *args, **kwargs: calls.append(fn) or fn(*args, **kwargs)

    monkeypatch.setattr(torch, "compile", fake_compile)
    step = TrainStep(tiny_train(compile=True, steps=2, deep_supervision=deep_supervision), torch.device("cpu"))
    step(), step()
    run = step.model.logits_per_step if deep_supervision else step.model
    assert compiled == [run] and calls == [run, run]


def test_cuda_graph_is_off_on_cpu():
    step = TrainStep(tiny_train(), torch.device("cpu"))
    assert step.cfg.cuda_graph and not step.graphed and step.lr is None
    for _ in range(GRAPH_WARMUP + 2):
        step()
    assert step.graphs is None
    assert train(tiny_train(max_samples=2048, eval_every=1024, target=2.0)).cuda_graph is False


def tensor_scheduled(step: TrainStep) -> TrainStep:
    """Give a CPU step what a graphed CUDA step has: its learning rate and averaging weight in tensors."""
    step.lr = torch.tensor(step.cfg.lr)
    for group in step.optimizer.param_groups:
        group["lr"] = step.lr
    step.average.weight = torch.zeros(())
    return step


def test_learning_rate_and_average_weight_in_tensors_train_exactly_as_floats():
    """A replayed graph reads both from tensors the host fills each step (`TrainStep.schedule`); AdamW's
    decoupled weight decay then multiplies in float32 rather than in Python's float64, hence the tolerance.
    After 30 steps the averaged weights differ by up to 1.3e-6 on one CPU and 2.9e-6 on another (a
    weight whose Adam denominator is tiny amplifies the rounding); a learning rate stuck at its first
    value is off by 0.06 at most and 0.016 on average (warmup changes it every step)."""
    cfg = tiny_train(warmup_samples=512)
    plain, held = TrainStep(cfg, torch.device("cpu")), tensor_scheduled(TrainStep(cfg, torch.device("cpu")))
    losses, rates = [], []
    for _ in range(30):
        rates.append(plain.learning_rate())
        losses.append([plain().item(), held().item()])
        assert held.lr.item() == pytest.approx(rates[-1], rel=1e-6)
    losses = torch.tensor(losses)
    torch.testing.assert_close(losses[:, 1], losses[:, 0], rtol=1e-5, atol=0)
    assert len(set(rates)) > 10
    torch.testing.assert_close(held.average.flat, plain.average.flat, rtol=1e-5, atol=5e-5)


def test_restore_with_a_tensor_schedule_copies_into_the_live_tensors():
    """Captured graphs hold the optimizer state's addresses: a restart from the best state must copy into
    them, keep the learning-rate tensor, and train on exactly as a replaced state would."""
    cfg = tiny_train()
    held, plain = tensor_scheduled(TrainStep(cfg, torch.device("cpu"))), TrainStep(cfg, torch.device("cpu"))
    for step in (held, plain):
        step(), step()
    saved, saved_plain = held.state(), plain.state()
    live = [t for state in held.optimizer.state.values() for t in state.values()]
    for step in (held, plain):
        step(), step(), step()
    held.restore(saved)
    plain.restore(saved_plain)
    assert [t.data_ptr() for state in held.optimizer.state.values() for t in state.values()] == \
        [t.data_ptr() for t in live]
    assert all(group["lr"] is held.lr for group in held.optimizer.param_groups)
    for index, state in enumerate(held.optimizer.state.values()):
        for key, value in state.items():
            assert torch.equal(value, saved["optimizer"]["state"][index][key]), key
    torch.testing.assert_close(torch.stack([held() for _ in range(5)]), torch.stack([plain() for _ in range(5)]),
                               rtol=1e-5, atol=0)


def test_restoring_a_state_from_before_the_first_step_gives_a_fresh_optimizer():
    step = tensor_scheduled(TrainStep(tiny_train(), torch.device("cpu")))
    fresh = step.state()
    step(), step()
    step.restore(fresh)
    assert step.optimizer.state  # the live tensors stay (a graph holds them), zeroed
    assert all(not value.any() for state in step.optimizer.state.values() for value in state.values())


def cuda_steps(cuda_graph: bool, task: str = "addition", **overrides) -> TrainStep:
    cfg = tiny_train(task=task, task_options={}, device="cuda", cuda_graph=cuda_graph, **overrides)
    return TrainStep(cfg, torch.device("cuda"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_steady_state_gpu_steps_never_synchronise(cuda_graph):
    for task in ("addition", "copy", "roll", "multiply"):
        step = cuda_steps(cuda_graph, task)
        for _ in range(GRAPH_WARMUP + 2):
            step()
        assert (step.graphs is not None) == cuda_graph, step.graph_error
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            losses = [step() for _ in range(5)]
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert torch.isfinite(torch.stack(losses)).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graph_steps_train_like_eager_steps():
    """200 steps replayed as CUDA graphs give the eager steps' losses: same data, schedule and updates.

    Some backward kernels add with atomics, so the two runs part by float rounding that training then
    amplifies: the first 40 steps (the warm-up's changing learning rate, the capture, fresh batches) must
    agree to fp32 noise, all 200 to within 2%; a graph bug (a stale batch or learning rate, a lost
    update) is off by far more, within a few steps."""
    graphed, eager = cuda_steps(True, warmup_samples=2048), cuda_steps(False, warmup_samples=2048)
    first, second = torch.stack([graphed() for _ in range(200)]), torch.stack([eager() for _ in range(200)])
    assert graphed.graphs is not None, graphed.graph_error
    torch.testing.assert_close(first[:40], second[:40], rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(first, second, rtol=2e-2, atol=1e-3)
    torch.testing.assert_close(graphed.average.flat, eager.average.flat, rtol=2e-2, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graph_steps_restart_from_a_restored_state_like_eager_steps():
    losses = []
    for cuda_graph in (True, False):
        step = cuda_steps(cuda_graph)
        for _ in range(GRAPH_WARMUP + 5):
            step()
        saved = step.state()
        for _ in range(10):
            step()
        step.restore(saved)
        step.lr_scale = 0.5
        losses.append(torch.stack([step() for _ in range(10)]))
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-3, atol=1e-4)


def draws_with_a_host_read(step: TrainStep, only_in_capture: bool) -> None:
    """Make the step's data phase read a value back to the host: always, or only inside a capture."""
    real = step.draw

    def draw():
        batch = real()
        if not only_in_capture or torch.cuda.is_current_stream_capturing():
            batch.inputs.sum().item()  # a host synchronisation: refused inside a CUDA graph capture
        return batch

    step.draw = draw


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_failed_capture_trains_on_eagerly_and_the_next_trial_captures():
    step = cuda_steps(True)
    draws_with_a_host_read(step, only_in_capture=True)
    with pytest.warns(RuntimeWarning, match="the capture failed"):
        for _ in range(GRAPH_WARMUP + 1):
            step()
    assert step.graphs is None and not step.graphed
    assert "previous error during capture" not in step.graph_error  # the real cause, not its echo
    assert torch.cuda.current_stream() == torch.cuda.default_stream()
    losses = torch.stack([step() for _ in range(5)])  # eager draws: the generators left capture mode
    assert torch.isfinite(losses).all() and torch.rand(2, device="cuda").shape == (2,)
    fresh = cuda_steps(True)  # the next trial in the same process
    for _ in range(GRAPH_WARMUP + 2):
        fresh()
    assert fresh.graphs is not None, fresh.graph_error


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_host_sync_in_the_step_is_found_before_capture_not_inside_it():
    step = cuda_steps(True)
    draws_with_a_host_read(step, only_in_capture=False)
    with pytest.warns(RuntimeWarning, match="synchronises with the host") as caught:
        for _ in range(GRAPH_WARMUP + 3):
            step()
    assert step.graphs is None and "capture failed" not in " ".join(str(w.message) for w in caught)
    assert "synchroniz" in step.graph_error  # torch's own word for it, and where it happened


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_replays_graphs_and_learns():
    result = train(tiny_train(device="cuda"))
    assert result.cuda_graph and result.exact_match == 1.0


def test_exhaustive_check_stops_only_when_every_problem_is_right(monkeypatch):
    import thinker.training.loop as loop
    from thinker.exam import examine

    checked = []
    real = loop.find_wrong

    def fails_twice(model, task, **kw):
        checked.append(1)
        return torch.zeros(1, 4, dtype=torch.long) if len(checked) <= 2 else real(model, task, **kw)

    monkeypatch.setattr(loop, "find_wrong", fails_twice)
    cfg = tiny_train(eval_every=1024, exhaustive_check=True)
    result = train(cfg)
    assert result.stop_reason == "target" and result.exhaustive is True
    assert result.exhaustive_checks == len(checked) >= 3
    assert result.exhaustive_wrong[:2] == ["0 0 0 0", "0 0 0 0"]
    first_at_target = next(h["samples"] for h in result.history if h["exact_match"] >= cfg.target)
    assert result.samples_to_target >= first_at_target + 2 * 1024  # two failed checks: trained on past them
    state = {k: v for k, v in result.state_dict.items()}
    model = TrainStep(cfg, torch.device("cpu")).eval_model
    model.load_state_dict(state)
    exam = examine(model, TrainStep(cfg, torch.device("cpu")).task, exhaustive=True, long_size=0)
    assert exam.mode == "exhaustive" and bool(exam.scores.right.all())  # the saved model is the one that passed


def test_exhaustive_check_refuses_tasks_too_large_to_check():
    with pytest.raises(ConfigError, match="more than the 4,000,000 an exhaustive check scores"):
        train(tiny_train(task_options={"alphabet": 11, "length": 8}, exhaustive_check=True))


def test_deep_supervision_trains_on_the_mean_of_every_steps_loss():
    from thinker.training.step import masked_loss

    step = TrainStep(tiny_train(steps=3, deep_supervision=True), torch.device("cpu"))
    batch = step.task.sample(32, torch.Generator().manual_seed(0))
    targets = batch.targets[:, -batch.answers:]
    per_step = step.model.logits_per_step(batch.inputs, shared_layout=True, tail=batch.answers)
    expected = sum(masked_loss(logits, targets) for logits in per_step) / 3
    torch.testing.assert_close(step.loss(batch), expected)
    assert not torch.allclose(expected, masked_loss(per_step[-1], targets))


def test_feedback_trains_later_steps_on_the_true_scratch():
    """Teacher forcing: in training, a step reads back the true partial products, not its predecessor's."""
    from thinker.training.step import masked_loss

    cfg = TrainConfig.for_task("multiply", d_model=32, n_heads=2, n_layers=1, device="cpu")
    assert cfg.model.feedback and cfg.deep_supervision and cfg.to_dict()["feedback"]
    step = TrainStep(cfg, torch.device("cpu"))
    batch = step.task.sample(32, torch.Generator().manual_seed(0))
    targets = batch.targets[:, -batch.answers:]
    step.model.train()
    taught = step.model.logits_per_step(batch.inputs, shared_layout=True, tail=batch.answers, scratch=batch.targets)
    expected = sum(masked_loss(logits, targets) for logits in taught) / len(taught)
    torch.testing.assert_close(step.loss(batch), expected)
    own = step.model.logits_per_step(batch.inputs, shared_layout=True, tail=batch.answers)
    assert not torch.allclose(own[-1], taught[-1])
    with pytest.raises(ConfigError, match="feedback needs deep_supervision"):
        TrainConfig.for_task("multiply", deep_supervision=False)


@pytest.mark.parametrize("values, message", [
    ({"lr": "0.1"}, "lr must be a finite number, got '0.1'"),
    ({"compile": "yes"}, "compile must be true or false, got 'yes'"),
    ({"batch_size": 64.0}, "batch_size must be an integer, got 64.0"),
    ({"max_seconds": float("nan")}, "max_seconds must be a finite number, got nan"),
    ({"target": float("inf")}, "target must be a finite number, got inf"),
    ({"target": -1}, "target must be positive (an exact match to reach; above 1: never), got -1"),
    ({"task_options": "x"}, "task_options must be a table of options, got 'x'"),
    ({"steps": 2.0}, "steps must be an integer, got 2.0"),
    ({"rotary": 1}, "rotary must be true or false, got 1"),
])
def test_settings_of_the_wrong_type_are_one_clear_error(values, message):
    """Settings come from JSON, TOML and search spaces: a string rate or a "yes" switch is caught on building."""
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"task": "copy", **values})
    assert str(info.value) == message


def test_min_steps_thinks_a_random_number_of_steps_per_batch(monkeypatch):
    """Each batch runs min_steps..steps (all of them, over a few batches); without it, always `steps`."""
    for min_steps, expected in [(1, {1, 2, 3}), (0, {3})]:
        step = TrainStep(tiny_train(steps=3, min_steps=min_steps), torch.device("cpu"))
        seen = []

        def think(*args, seen=seen, original=step.model.think, **kwargs):
            seen.append(args[1] or 3)
            return original(*args, **kwargs)

        monkeypatch.setattr(step.model, "think", think)
        for _ in range(30):
            step()
        assert set(seen) == expected


def test_max_positions_widens_the_position_tables_beyond_the_task():
    cfg = tiny_train(max_positions=40, position_jitter=True)
    step = TrainStep(cfg, torch.device("cpu"))
    assert step.model.cfg.max_len == 40 and step.model.pos_emb.weight.shape[0] == 40
    assert TrainStep(tiny_train(), torch.device("cpu")).model.cfg.max_len == step.task.max_len  # 0: the task's


def test_length_eval_scores_longer_problems_thinking_in_proportion(monkeypatch):
    import thinker.training.loop as loop  # noqa: PLC0415

    calls, evaluate = [], loop.evaluate

    def spy(model, batches, *args, steps=None, **kwargs):
        calls.append((batches[0].inputs.shape[1], steps, model.cfg.max_len))
        return evaluate(model, batches, *args, steps=steps, **kwargs)

    monkeypatch.setattr(loop, "evaluate", spy)
    result = train(tiny_train(length_eval=8, steps=2, max_samples=1024, eval_every=512, target=2.0))
    held_out, longer = calls[0], calls[1]
    assert held_out[1] is None and longer[1] == 4  # 2 trained steps x 8 / 4 symbols
    assert longer[0] > held_out[0] and longer[2] >= 9  # copy of 8 symbols: positions 0..8
    assert all("length_exact_match" in h for h in result.history)
    with pytest.raises(ConfigError, match="length_eval must not be negative"):
        tiny_train(length_eval=-1)

