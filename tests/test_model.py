"""Model checks that catch the experiment log's bugs: run with `pytest tests/test_model.py`."""

import pytest
import torch

from thinker.model import Thinker, ThinkerConfig, segment_positions


@pytest.fixture
def model(tiny_model_config):
    torch.manual_seed(0)
    return Thinker(tiny_model_config).eval()


def tokens(batch=5, length=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(3, 20, (batch, length), generator=g)
    x[:, 4] = 1  # a separator, so positions restart mid-sequence
    return x


def test_output_shape(model):
    assert model(tokens()).shape == (5, 12, 20)


def test_changing_one_sample_changes_no_other(model):
    x = tokens()
    y = x.clone()
    y[2, :4] = torch.tensor([3, 4, 5, 6])
    out_x, out_y = model(x), model(y)
    others = [0, 1, 3, 4]
    torch.testing.assert_close(out_x[others], out_y[others], rtol=0, atol=1e-6)
    assert not torch.allclose(out_x[2], out_y[2])


def test_permuting_the_batch_permutes_the_outputs(model):
    x = tokens()
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(model(x)[perm], model(x[perm]), rtol=1e-5, atol=1e-6)


def test_sequence_order_matters(model):
    """A batch/sequence swap would make outputs depend on the batch, not on the sequence order."""
    x = tokens(batch=1)
    shuffled = x[:, [1, 0, *range(2, 12)]]
    assert not torch.allclose(model(x)[0, 1], model(shuffled)[0, 1])


def test_backward_through_cached_steps_reaches_every_parameter(tiny_model_config):
    assert tiny_model_config.steps == 4
    model = Thinker(tiny_model_config).train()
    with torch.autograd.set_detect_anomaly(True):
        model(tokens()).logsumexp(-1).mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert model.memory.grad.abs().sum() > 0


def test_later_steps_attend_to_earlier_steps(tiny_model_config):
    """With one step the cache holds one entry; more steps see all earlier keys."""
    seen = []
    model = Thinker(tiny_model_config).eval()
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append(k.shape[2])
        return original(q, k, v, **kw)

    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        model(tokens(length=6))
    finally:
        torch.nn.functional.scaled_dot_product_attention = original
    state = tiny_model_config.latent + 6
    assert seen == [state * (s + 1) for s in range(tiny_model_config.steps)]


def test_segment_positions_restart_after_separators():
    segment, position = segment_positions(torch.tensor([[7, 8, 9, 1, 7, 8, 9, 1, 2, 2, 2]]), sep_id=1)
    assert position.tolist() == [[0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2]]
    assert segment.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]]


def test_flops_grow_with_steps():
    small = Thinker(ThinkerConfig(steps=1))
    big = Thinker(ThinkerConfig(steps=4))
    assert big.flops_per_token(12) > 4 * small.flops_per_token(12)
    assert small.num_params(embeddings=False) < small.num_params()


@pytest.mark.parametrize("bad", [dict(d_model=30, n_heads=4), dict(steps=0), dict(latent=-1),
                                 dict(dropout=1.0)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        ThinkerConfig(**bad)
