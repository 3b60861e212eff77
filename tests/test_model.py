"""Model checks that catch the experiment log's bugs: run with `pytest tests/test_model.py`.

Each invariance check is a plain function run twice: on the real model, where it must pass, and on a
deliberately broken one (batch and sequence dimensions swapped in attention; the cache written in
place), where it must fail. A check that passed on the broken model too would prove nothing.
"""

import pytest
import torch
import torch.nn.functional as F

import thinker.attention as attention_module
from thinker.attention import Attention, rotate
from thinker.model import Thinker, ThinkerConfig, segment_positions


def tokens(batch=5, length=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(3, 20, (batch, length), generator=g)
    for i in range(batch):
        x[i, 2 + i % 4] = 1  # a separator, so positions restart mid-sequence, at a different place per sample
    return x


# -- the broken models ----------------------------------------------------------------------------
class SwappedAttention(Attention):
    """The experiment log's bug: attention run over (sequence, batch, ...) as if it were (batch, sequence, ...),
    so every position attends across the batch instead of along its own sequence."""

    def forward(self, x, cache, bias=None, rotation=None, tail=None):
        return super().forward(x.transpose(0, 1), cache).transpose(0, 1)


class InPlaceCacheAttention(Attention):
    """The experiment log's other bug: keys and values written into a preallocated cache by slice assignment."""

    def forward(self, x, cache, bias=None, rotation=None, tail=None):
        B, S, D = x.shape
        H = self.n_heads
        q, k, v = self.qkv(x).split(D, dim=2)
        q, k, v = (t.view(B, S, H, D // H).transpose(1, 2) for t in (q, k, v))  # (B, H, S, hd)
        if rotation is not None:
            q, k = rotate(q, *rotation), rotate(k, *rotation)
        if not cache:
            cache.append(torch.zeros(2, B, H, S * 8, D // H))  # room for 8 steps
        store, step = cache[0], len(cache) - 1
        cache.append(None)
        store[0, :, :, step * S:(step + 1) * S] = k  # in place: autograd saved `store` for earlier steps
        store[1, :, :, step * S:(step + 1) * S] = v
        y = F.scaled_dot_product_attention(q, store[0, :, :, :(step + 1) * S], store[1, :, :, :(step + 1) * S])
        return self.proj(y.transpose(1, 2).reshape(B, S, D))


class FirstSampleBias(Thinker):
    """A shortcut that looks harmless: the position bias of the first sample used for the whole batch."""

    def position_bias(self, position):
        return super().position_bias(position[:1].expand_as(position))


def build(cfg: ThinkerConfig, kind: str = "sound") -> Thinker:
    torch.manual_seed(0)
    model = FirstSampleBias(cfg) if kind == "first-sample-bias" else Thinker(cfg)
    torch.nn.init.normal_(model.rel_bias)  # zero at initialisation; a trained model's is not
    broken = {"swapped": SwappedAttention, "in-place": InPlaceCacheAttention}.get(kind)
    if broken is not None:
        for block in model.blocks:
            block.attn.__class__ = broken
    return model


# -- the checks -----------------------------------------------------------------------------------
def check_changing_one_sample_changes_no_other(model):
    x = tokens()
    y = x.clone()
    y[2, :4] = torch.tensor([3, 4, 5, 6])
    out_x, out_y = model(x), model(y)
    others = [0, 1, 3, 4]
    torch.testing.assert_close(out_x[others], out_y[others], rtol=0, atol=1e-6)
    assert not torch.allclose(out_x[2], out_y[2])


def check_permuting_the_batch_permutes_the_outputs(model):
    x = tokens()
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(model(x)[perm], model(x[perm]), rtol=1e-5, atol=1e-6)


def check_positions_see_each_other(model):
    """Changing the first token changes the output at a far position of the same sample, and changing
    the order of tokens changes what a later position reads. Position 8 is never edited, so only
    attention along the sequence can move its output."""
    x = tokens(batch=1)
    changed = x.clone()
    changed[0, 0] = 3 if x[0, 0] != 3 else 4
    assert not torch.allclose(model(x)[0, 8], model(changed)[0, 8], atol=1e-6)
    shuffled = x[:, [1, 0, *range(2, 12)]]
    assert not torch.allclose(model(x)[0, 8], model(shuffled)[0, 8], atol=1e-6)


def check_backward_reaches_every_parameter(model):
    model.train()
    with torch.autograd.set_detect_anomaly(True):
        model(tokens()).logsumexp(-1).mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


EVAL_CHECKS = [check_changing_one_sample_changes_no_other, check_permuting_the_batch_permutes_the_outputs,
               check_positions_see_each_other]


@pytest.mark.parametrize("check", EVAL_CHECKS + [check_backward_reaches_every_parameter], ids=lambda c: c.__name__)
def test_checks_pass_on_the_model(check, tiny_model_config):
    model = build(tiny_model_config)
    if check is not check_backward_reaches_every_parameter:
        model.eval()
    check(model)


@pytest.mark.parametrize("check, kind", [
    (check_changing_one_sample_changes_no_other, "swapped"),
    (check_positions_see_each_other, "swapped"),
    # Attention across the batch is itself permutation-equivariant, so this check cannot see a swap;
    # it catches a batch that shares what each sample must compute for itself.
    (check_permuting_the_batch_permutes_the_outputs, "first-sample-bias"),
], ids=lambda c: getattr(c, "__name__", c))
def test_checks_fail_on_a_broken_model(check, kind, tiny_model_config):
    with pytest.raises(AssertionError):
        check(build(tiny_model_config, kind).eval())


@pytest.mark.filterwarnings("ignore:Error detected")  # anomaly mode's report of the very error expected
def test_backward_check_fails_on_an_in_place_cache_write(tiny_model_config):
    assert tiny_model_config.steps == 4  # several steps, so a later write hits what an earlier one saved
    with torch.no_grad():  # forward alone is fine: the bug only shows in backward, as in the log
        build(tiny_model_config, "in-place").eval()(tokens())
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        check_backward_reaches_every_parameter(build(tiny_model_config, "in-place"))


def test_later_steps_attend_to_earlier_steps(tiny_model_config, monkeypatch):
    """With one step the cache holds one entry; step s sees the keys of steps 0..s."""
    seen = []
    original = attention_module.attend

    def spy(q, k, v, *args):
        seen.append(k.shape[2])
        return original(q, k, v, *args)

    monkeypatch.setattr(attention_module, "attend", spy)
    build(tiny_model_config).eval()(tokens(length=6))
    state = tiny_model_config.latent + 6
    assert seen == [state * (s + 1) for s in range(tiny_model_config.steps)]


def test_segment_positions_restart_after_separators():
    segment, position = segment_positions(torch.tensor([[7, 8, 9, 1, 7, 8, 9, 1, 2, 2, 2]]), sep_id=1)
    assert position.tolist() == [[0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2]]
    assert segment.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]]


def test_rotary_scores_depend_on_position_difference():
    """What lets roll's answer slot i find position i - k: a query turned by k matches offset k."""
    model = Thinker(ThinkerConfig(d_model=32, n_heads=2, latent=0))
    cos, sin = model.rotation(torch.arange(12)[None])
    q, k = torch.randn(2, 1, 1, 1, 16).unbind(0)
    scores = (rotate(q.expand(1, 1, 12, 16), cos, sin) @ rotate(k.expand(1, 1, 12, 16), cos, sin).mT)[0, 0]
    torch.testing.assert_close(scores[5, 2], scores[9, 6])
    torch.testing.assert_close(scores[2, 5], scores[6, 9])
    assert not torch.allclose(scores[5, 2], scores[5, 3])


def test_flops_per_token_matches_a_count_of_the_forward_pass(tiny_model_config, monkeypatch):
    """Training FLOPs are 3x the forward's (backward costs two forwards); the forward's matmuls are
    counted by torch's FlopCounterMode, independently of the formula. Attention is spelled out as
    matmuls for the count (the fused CPU kernel is not counted); the formula also counts biases and
    norms, so it may read a few percent higher."""
    from torch.utils.flop_counter import FlopCounterMode

    def attention_as_matmuls(q, k, v, attn_mask=None, dropout_p=0.0):
        scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
        return (scores + (attn_mask if attn_mask is not None else 0)).softmax(-1) @ v

    monkeypatch.setattr(F, "scaled_dot_product_attention", attention_as_matmuls)
    model = build(tiny_model_config).eval()
    length = 12
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(tokens(batch=1, length=length))
    counted = 3 * counter.get_total_flops() / length
    assert counted == pytest.approx(model.flops_per_token(length), rel=0.05)


@pytest.mark.parametrize("bad", [dict(d_model=30, n_heads=4), dict(steps=0), dict(latent=-1),
                                 dict(dropout=1.0), dict(d_model=12, n_heads=4),  # rotary: even head width
                                 dict(max_positions=-1)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        ThinkerConfig(**bad)


def test_shared_layout_and_tail_give_the_full_forward_pass_answers():
    """The fast path (one position layout per batch, last block for the answer rows only) is the same function."""
    from thinker.tasks import make_task

    task = make_task("addition", max_operand=200)
    model = build(ThinkerConfig(vocab_size=task.vocab_size, max_len=task.max_len, d_model=32, n_heads=2,
                                n_layers=2, latent=3, steps=3)).eval()
    batch = task.sample(64, torch.Generator().manual_seed(0))
    full = model(batch.inputs)[:, -batch.answers:]
    torch.testing.assert_close(model(batch.inputs, shared_layout=True, tail=batch.answers), full,
                               rtol=1e-5, atol=1e-5)
    per_step = model.logits_per_step(batch.inputs, shared_layout=True, tail=batch.answers)
    assert len(per_step) == 3
    torch.testing.assert_close(per_step[-1], full, rtol=1e-5, atol=1e-5)


def test_fused_and_matmul_attention_are_the_same_function():
    """`attention` picks a kernel, never a different model: same logits and gradients, bias and cache included."""
    from thinker.tasks import make_task

    task = make_task("addition", max_operand=200)
    config = dict(vocab_size=task.vocab_size, max_len=task.max_len, d_model=32, n_heads=2, latent=3, steps=3)
    batch = task.sample(64, torch.Generator().manual_seed(0))
    results = []
    for kernel in ("sdpa", "matmul"):
        model = build(ThinkerConfig(**config, attention=kernel))
        logits = model(batch.inputs, shared_layout=True, tail=batch.answers)
        logits.square().mean().backward()
        results.append((logits, [p.grad for p in model.parameters()]))
    (fused, fused_grads), (matmul, matmul_grads) = results
    torch.testing.assert_close(fused, matmul, rtol=1e-5, atol=1e-5)
    for a, b in zip(fused_grads, matmul_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="attention must be one of auto, sdpa, matmul"):
        ThinkerConfig(attention="flash")


def test_steps_at_test_time_are_the_same_weights_applied_more_often(tiny_model_config):
    model = build(tiny_model_config).eval()
    x = tokens()
    other = Thinker(ThinkerConfig(**{**tiny_model_config.to_dict(), "steps": 7})).eval()
    other.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(x, steps=7), other(x))
    assert not torch.allclose(model(x, steps=1), model(x))
    with pytest.raises(ValueError, match="steps must be positive"):
        model(x, steps=0)


def test_feedback_reads_scratch_back_into_the_scratch_slots_only():
    from thinker.tasks import ANS, make_task

    task = make_task("multiply")
    cfg = ThinkerConfig(vocab_size=task.vocab_size, max_len=task.max_len, d_model=32, n_heads=2, n_layers=1,
                        latent=2, steps=2, n_segments=8, ans_id=ANS)
    plain = build(cfg).eval()
    fed = Thinker(ThinkerConfig(**{**cfg.to_dict(), "feedback": True})).eval()
    fed.load_state_dict(plain.state_dict())  # feedback adds no weights: it reuses the token embeddings
    batch = task.sample(8, torch.Generator().manual_seed(0))
    scratch = torch.zeros_like(batch.inputs, dtype=torch.bool)
    scratch[:, -batch.answers:-batch.scored] = batch.inputs[:, -batch.answers:-batch.scored] == ANS
    slots = F.pad(scratch, (cfg.latent, 0))
    h = torch.randn(8, cfg.latent + batch.inputs.shape[1], cfg.d_model)
    back = fed.read_back(h, batch.inputs)  # the model's own writing: expected token embeddings
    assert back[~slots].abs().max() == 0 and (back[slots].abs().sum(-1) > 0).all()
    written = fed.readout(h[:, cfg.latent:]).softmax(-1) @ fed.tok_emb.weight
    torch.testing.assert_close(back[slots], written[scratch])
    taught = fed.read_back(h, batch.inputs, scratch=batch.targets)  # training: the true scratch tokens
    torch.testing.assert_close(taught[slots], fed.tok_emb(batch.targets)[scratch])
    assert taught[~slots].abs().max() == 0
    torch.testing.assert_close(fed(batch.inputs, steps=1), plain(batch.inputs, steps=1))  # nothing to read yet
    assert not torch.allclose(fed(batch.inputs), plain(batch.inputs))
    full = fed(batch.inputs)[:, -batch.answers:]
    torch.testing.assert_close(fed(batch.inputs, shared_layout=True, tail=batch.answers), full, rtol=1e-5, atol=1e-5)


def test_position_differences_beyond_the_bias_table_share_its_last_bucket():
    """A segment longer than max_len's differences (positions within the table) reads the edge buckets."""
    model = Thinker(ThinkerConfig(vocab_size=8, max_len=6, d_model=16, n_heads=2, latent=1))
    with torch.no_grad():
        model.rel_bias.copy_(torch.arange(12.0).expand(2, 12))
    bias = model.position_bias(torch.tensor([[0, 5, 0, 5]]))  # differences -5..5 fit; none go past
    assert bias[0, 0, 2, 1].item() == 5 + 5 and bias[0, 0, 1, 2].item() == -5 + 5  # query 5, key 0; and back
    far = model.position_bias(torch.tensor([[0, 5]]) * 3)  # 0 and 15 with max_len 6: clamped to +-5
    assert far[0, 0, 2, 1].item() == 10 and far[0, 0, 1, 2].item() == 0
