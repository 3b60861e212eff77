"""The thinker model: a weight-tied transformer that thinks for `steps` steps through latent memory.

    >>> cfg = ThinkerConfig(vocab_size=20, max_len=16, d_model=32, n_heads=2, n_layers=1,
    ...                     latent=4, steps=4)
    >>> model = Thinker(cfg)
    >>> model(torch.zeros(3, 10, dtype=torch.long)).shape
    torch.Size([3, 10, 20])

How it reads a sequence
-----------------------
The state is ``latent`` learned memory tokens followed by the embedded task tokens. One stack of
``n_layers`` blocks (shared weights) is applied ``steps`` times; before every step after the first
the input embedding is added again ("input injection", as in looped transformers: without it the
input fades over the steps and addition learns far slower). Each step's keys and values are appended
to a per-layer cache, so step ``s`` attends to the states of steps ``0..s``: later steps can look back
at what earlier steps computed. The cache is a Python list joined with ``torch.cat``: every step gets
fresh tensors, so autograd never sees a tensor it saved being overwritten (writing into a preallocated
cache with slice assignment is what broke backward on GPU in the experiment log). Attention is
bidirectional: answers are read at their slots in one pass, not decoded token by token.

Why this positional scheme
--------------------------
Tasks separate their operands and answer with a separator token (``sep_id``) and write numbers least
significant digit first. Positions are counted *within each segment*, restarting after every
separator, and a segment embedding tells the segments apart. So digit ``i`` of ``a``, digit ``i`` of
``b`` and digit ``i`` of the sum share position ``i`` ("position coupling"): the answer slot for
digit ``i`` finds its two operand digits by matching one position, and the carry comes from position
``i - 1``, the same relative offset for every digit. Least-significant-first order makes the carry
flow in reading order. During training every sample's positions are shifted by a random offset
(Abacus-style), so embeddings for positions up to ``max_len`` are trained and longer-than-training
inputs (length generalisation) land on trained positions.

Queries and keys are also rotated by their position within the segment (rotary embeddings), so a
score can depend on the position difference *times* content. Added position embeddings and the
learned bias cannot do that: the score of a query holding ``pos(i) + content`` against a key at ``j``
is a sum of a position term and a content term, and the bias is one number per difference. Roll
needs the answer slot ``i`` to read position ``i - k`` for a shift ``k`` it reads from the input: with
rotations the query only has to turn by an angle chosen by ``k``; without them roll never got past
predicting the input's most common symbol (0% exact match), while a fixed shift learned at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from thinker.attention import ATTENTION, Block, segment_positions
from thinker.errors import ConfigError
from thinker.parsing import check_type

ROTARY_BASE = 10000.0  # rotary frequencies: ROTARY_BASE ** (-i / (head_dim / 2))


@dataclass
class ThinkerConfig:
    vocab_size: int = 32
    """Number of token ids; task tokens and the reserved pad/separator/answer ids."""
    max_len: int = 64
    """Largest position within a segment (positions restart after each separator)."""
    d_model: int = 64
    """Width of the residual stream."""
    n_heads: int = 4
    """Attention heads; must divide d_model."""
    n_layers: int = 2
    """Blocks in the weight-tied stack applied at every step."""
    latent: int = 4
    """Learned memory tokens prepended to the sequence (0 disables memory)."""
    steps: int = 2
    """Recurrent thinking steps through the shared stack."""
    mlp_ratio: int = 4
    """Hidden width of the MLP as a multiple of d_model."""
    dropout: float = 0.0
    """Dropout on attention and MLP outputs during training."""
    sep_id: int = 1
    """Token id that separates segments; positions restart after it."""
    ans_id: int = 2
    """Token id of the slots the model writes its answer (and any scratch) into."""
    n_segments: int = 4
    """Segment embeddings available (operands, answer, ...)."""
    position_jitter: bool = False
    """Shift positions by a random offset per sample in training (length generalisation)."""
    max_positions: int = 0
    """Positions the model has (0: the task's longest segment); trained with `position_jitter`."""
    relative_bias: bool = True
    """Learned per-head attention bias by position difference within segments (shared by all steps)."""
    window: int = 0
    """Local attention (0: off): task tokens see task tokens at most this many positions away (memory
    tokens see all), so a rule that reads its neighbours looks the same at every length."""
    absolute_positions: bool = True
    """Add a learned embedding of each token's position within its segment. Off, the model knows positions
    only through differences (rotary, the relative bias, the window): what it computes at a digit cannot
    depend on which digit it is, so a local rule learned on short numbers is the same rule on long ones."""
    rotary: bool = True
    """Rotate queries and keys by position within segments (RoPE), so offsets can depend on content."""
    attention: str = "auto"
    """How attention is computed (the same function either way): "sdpa", PyTorch's fused kernels;
    "matmul", two matrix products and a softmax; "auto", fused kernels on GPUs, matrix products on CPUs."""
    feedback: bool = False
    """Scratch read back: before every step after the first, each scratch slot (an answer slot before
    the last segment) also gets the embedding of the token written there, so a later step reads the
    intermediate results as tokens, as a scratchpad is written and read. In training that token is
    the true one (teacher forcing, `forward(..., scratch=targets)`); otherwise it is what the previous
    step would write (its softmax over the vocabulary times the token embeddings)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            check_type(f.name, getattr(self, f.name), f.type)
        for name in ("vocab_size", "max_len", "d_model", "n_heads", "n_layers", "steps",
                     "mlp_ratio", "n_segments"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("latent", "max_positions", "window"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.rotary and self.d_model // self.n_heads % 2:
            raise ConfigError(f"rotary needs an even head width, got {self.d_model // self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.attention not in ATTENTION:
            raise ConfigError(f"attention must be one of {', '.join(ATTENTION)}, got {self.attention!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class Thinker(nn.Module):
    def __init__(self, cfg: ThinkerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.seg_emb = nn.Embedding(cfg.n_segments, cfg.d_model)
        self.memory = nn.Parameter(torch.randn(cfg.latent, cfg.d_model) * 0.02)
        # buckets: position differences -(max_len-1)..(max_len-1), then one for pairs with memory
        self.rel_bias = nn.Parameter(torch.zeros(cfg.n_heads, 2 * cfg.max_len)) if cfg.relative_bias else None
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_heads, cfg.mlp_ratio, cfg.dropout, cfg.attention)
                                    for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def embed(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token + position + segment embeddings (B, T, D), and the positions used (B, T)."""
        cfg = self.cfg
        segment, position = segment_positions(tokens, cfg.sep_id)
        if self.training and cfg.position_jitter:
            # One offset per sample keeps the segments' digits aligned with each other.
            room = cfg.max_len - position.max(dim=1, keepdim=True).values  # (B, 1)
            offset = (torch.rand(room.shape, device=tokens.device) * room).long()
            position = position + offset
        segment = segment.clamp(max=cfg.n_segments - 1)
        if not cfg.absolute_positions:
            return self.tok_emb(tokens) + self.seg_emb(segment), position
        return self.tok_emb(tokens) + self.pos_emb(position) + self.seg_emb(segment), position

    def position_bias(self, position: torch.Tensor) -> torch.Tensor | None:
        """Attention bias (B, H, L + T, L + T) from position differences; memory pairs share a bucket.

        Digit i of the answer finds digit i of each operand (difference 0) and the carry from digit
        i - 1 (difference 1) with one learned number per head, the same at every position; task tokens
        farther apart than a `window` get -inf.
        """
        cfg = self.cfg
        if self.rel_bias is None and not cfg.window:
            return None
        B, T = position.shape
        diff = position[:, :, None] - position[:, None, :]  # (B, T, T)
        size = cfg.latent + T
        if self.rel_bias is not None:  # longer differences than the table holds share its edge buckets
            buckets = torch.full((B, size, size), 2 * cfg.max_len - 1, dtype=torch.long, device=position.device)
            buckets[:, cfg.latent:, cfg.latent:] = diff.clamp(1 - cfg.max_len, cfg.max_len - 1) + cfg.max_len - 1
            bias = self.rel_bias[:, buckets].permute(1, 0, 2, 3)  # (B, H, L + T, L + T)
        else:
            bias = torch.zeros(B, cfg.n_heads, size, size, device=position.device)
        if cfg.window:
            far = F.pad(diff.abs() > cfg.window, (cfg.latent, 0, cfg.latent, 0))  # (B, L + T, L + T)
            bias = bias.masked_fill(far[:, None], float("-inf"))
        return bias

    def rotation(self, position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """cos and sin (B, 1, L + T, hd / 2) of the rotary angles; memory tokens sit at position 0."""
        cfg = self.cfg
        if not cfg.rotary:
            return None
        half = cfg.d_model // cfg.n_heads // 2
        freq = ROTARY_BASE ** (-torch.arange(half, device=position.device) / half)
        position = F.pad(position, (cfg.latent, 0))  # (B, L + T)
        angle = position[:, None, :, None].float() * freq  # (B, 1, L + T, half)
        return angle.cos(), angle.sin()

    def forward(self, tokens: torch.Tensor, steps: int | None = None, shared_layout: bool = False,
                tail: int | None = None, scratch: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab_size) for a batch of token ids (B, T); (B, tail, vocab_size) with `tail`.

        `steps` overrides the configured number of thinking steps (test-time thinking: the same
        weights, applied more or fewer times). `shared_layout=True` promises that every row has its
        separators at the same places (true of every batch a task encodes): the position bias and
        rotations are then computed once for the batch instead of once per row. `tail` asks for the
        logits of the last `tail` tokens only (where every task puts its answer slots): the last block
        of the last step then runs its queries, projection and MLP for those rows alone. `scratch`
        (B, T): the true tokens of the scratch slots, read back instead of the model's own (training
        with `feedback`; see `ThinkerConfig.feedback`).
        """
        return self.readout(self.think(tokens, steps, shared_layout, tail, scratch)[-1])

    def logits_per_step(self, tokens: torch.Tensor, steps: int | None = None, shared_layout: bool = False,
                        tail: int | None = None, scratch: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Logits after every thinking step: what the model would answer had it stopped there."""
        return [self.readout(h) for h in self.think(tokens, steps, shared_layout, tail, scratch)]

    def think(self, tokens: torch.Tensor, steps: int | None = None, shared_layout: bool = False,
              tail: int | None = None, scratch: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The task tokens' states (B, T or tail, D) after each thinking step (see `forward`)."""
        cfg = self.cfg
        steps = cfg.steps if steps is None else steps
        if steps < 1:
            raise ConfigError(f"steps must be positive, got {steps}")
        B, T = tokens.shape
        if tail is not None and not 0 < tail <= T:
            raise ConfigError(f"tail must be in 1..{T}, got {tail}")
        x, position = self.embed(tokens)  # (B, T, D), (B, T)
        # Jitter shifts each row's positions by one offset: differences (the bias) stay shared, angles do not.
        per_row = not shared_layout or (self.training and cfg.position_jitter)
        bias = self.position_bias(position if not shared_layout else position[:1])  # (B or 1, H, L+T, L+T)
        rotation = self.rotation(position if per_row else position[:1])
        e = torch.cat([self.memory.expand(B, -1, -1), x], dim=1)  # (B, L + T, D)
        caches: list[list] = [[] for _ in self.blocks]
        h, states = e, []
        last = len(self.blocks) - 1
        keep = slice(cfg.latent, None) if tail is None else slice(-tail, None)
        for step in range(steps):
            if step:  # re-inject the input at every step (and, with feedback, the scratch written)
                h = h + e + self.read_back(h, tokens, scratch) if cfg.feedback else h + e
            for i, (block, cache) in enumerate(zip(self.blocks, caches)):
                trim = tail if step == steps - 1 and i == last else None
                h = block(h, cache, bias, rotation, trim)
            states.append(h[:, keep])
        return states

    def read_back(self, h: torch.Tensor, tokens: torch.Tensor, scratch: torch.Tensor | None = None) -> torch.Tensor:
        """The token written at each scratch slot, embedded (B, L + T, D): `scratch`'s own tokens when
        given, else what the state `h` (B, L + T, D) would write (the expected token embedding under its
        softmax); zero at every other position, the answer proper and the memory included."""
        cfg = self.cfg
        if scratch is not None:
            written = self.tok_emb(scratch)  # (B, T, D)
        else:
            written = self.readout(h[:, cfg.latent:]).softmax(-1) @ self.tok_emb.weight  # (B, T, D)
        segment, _ = segment_positions(tokens, cfg.sep_id)
        slots = (tokens == cfg.ans_id) & (segment < segment.max(dim=1, keepdim=True).values)
        return F.pad(written * slots.unsqueeze(-1).to(written.dtype), (0, 0, cfg.latent, 0))

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Logits (B, n, vocab_size) from task-token states (B, n, D)."""
        return self.head(self.ln_f(h))

    def num_params(self, embeddings: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if not embeddings:  # lookup tables: token, position, segment, and the position bias
            n -= sum(m.weight.numel() for m in (self.tok_emb, self.pos_emb, self.seg_emb))
            n -= self.rel_bias.numel() if self.rel_bias is not None else 0
        return n

    def flops_per_token(self, length: int) -> float:
        """Training FLOPs per input token (forward + backward) for sequences of `length` tokens.

        6 FLOPs per weight per token for every pass through the shared stack, plus attention
        scores and values (12 * layers * d_model * attended length per step), where step ``s``
        attends to ``(s + 1) * (latent + length)`` cached positions. Memory tokens cost compute too,
        so the total is spread over the task tokens only.

        >>> m = Thinker(ThinkerConfig(d_model=32, n_heads=2, n_layers=1, latent=0, steps=1))
        >>> m.flops_per_token(10) == 6 * m.num_params(embeddings=False) + 12 * 32 * 10
        True
        """
        cfg = self.cfg
        S = cfg.latent + length
        stack = sum(p.numel() for p in self.blocks.parameters())
        per_state_token = 0.0
        for step in range(cfg.steps):
            per_state_token += 6 * stack + 12 * cfg.n_layers * cfg.d_model * (step + 1) * S
        head = 6 * sum(p.numel() for p in (*self.head.parameters(), *self.ln_f.parameters()))
        return (per_state_token * S + head * length) / length
