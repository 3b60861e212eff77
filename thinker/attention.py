"""Attention and the block the thinker stacks: the model's parts that see one step at a time.

    >>> block = Block(d_model=32, n_heads=2, mlp_ratio=4, dropout=0.0)
    >>> cache = []
    >>> block(torch.zeros(3, 5, 32), cache).shape, len(cache)
    (torch.Size([3, 5, 32]), 1)

`segment_positions` gives every token its segment and its position within it (what the model's position
embeddings, bias and rotations read). Every call of a block appends this step's keys and values to
`cache` (a list) and attends over all of them: step ``s`` sees the states of steps ``0..s`` (see
`thinker.model`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION = ("auto", "sdpa", "matmul")  # how `attend` computes: see `ThinkerConfig.attention`


def segment_positions(tokens: torch.Tensor, sep_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Segment index and position within the segment for each token; both (B, T).

    A separator closes its segment: it takes the next position in it, and counting restarts after it.

    >>> segment_positions(torch.tensor([[5, 6, 1, 7, 1, 2, 2]]), sep_id=1)
    (tensor([[0, 0, 0, 1, 1, 2, 2]]), tensor([[0, 1, 2, 0, 1, 0, 1]]))
    """
    is_sep = (tokens == sep_id).long()
    segment = torch.cumsum(is_sep, dim=1) - is_sep  # separators belong to the segment they close
    index = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
    # index of the first token of each token's segment = (index of last separator before it) + 1
    last_sep = torch.where(is_sep.bool(), index, torch.full_like(index, -1))
    last_sep = torch.cummax(last_sep, dim=1).values
    prev_sep = torch.cat([torch.full_like(last_sep[:, :1], -1), last_sep[:, :-1]], dim=1)
    return segment, index - prev_sep - 1


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, kernel: str = "auto") -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout
        self.kernel = kernel

    def forward(self, x: torch.Tensor, cache: list[tuple[torch.Tensor, torch.Tensor]],
                bias: torch.Tensor | None = None, rotation: tuple | None = None,
                tail: int | None = None) -> torch.Tensor:
        """Self-attention over this and every earlier step's keys; queries of the last `tail` rows only
        if given (the keys and values of every row still go into the cache)."""
        B, S, D = x.shape
        H = self.n_heads
        q, k, v = self.qkv(x).split(D, dim=2)
        q = q.view(B, S, H, D // H).transpose(1, 2)  # (B, H, S, hd)
        k = k.view(B, S, H, D // H).transpose(1, 2)  # (B, H, S, hd)
        if rotation is not None:  # on contiguous copies: elementwise ops on the strided views run ~3x slower
            q, k = rotate(q.contiguous(), *rotation), rotate(k.contiguous(), *rotation)
        v = v.view(B, S, H, D // H).transpose(1, 2)  # (B, H, S, hd)
        # Grow the cache functionally: append and concatenate, never write into a saved tensor.
        cache.append((k, v))
        k_all = torch.cat([c[0] for c in cache], dim=2) if len(cache) > 1 else k  # (B, H, S * steps_so_far, hd)
        v_all = torch.cat([c[1] for c in cache], dim=2) if len(cache) > 1 else v  # (B, H, S * steps_so_far, hd)
        if tail is not None:
            q, bias = q[:, :, -tail:], None if bias is None else bias[:, :, -tail:]
        if bias is not None:  # the same position bias for every cached step's keys
            bias = bias.repeat(1, 1, 1, len(cache))  # (B or 1, H, S, S * steps_so_far)
        y = attend(q, k_all, v_all, bias, self.dropout if self.training else 0.0, self.kernel)
        y = y.transpose(1, 2).reshape(B, q.shape[2], D)  # (B, S or tail, D)
        return self.proj(y)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
           dropout: float, kernel: str = "auto") -> torch.Tensor:
    """softmax(q k^T / sqrt(hd) + bias) v: PyTorch's fused kernels (`kernel` "sdpa"), or plain matrix
    products ("matmul"); "auto" picks the fused kernels on GPUs and matrix products on CPUs.

    The model's sequences are short (tens of tokens): there the CPU's flash-attention kernel spends
    its time in per-block overhead, and two matrix products and a softmax run ~2x faster. The
    softmax is spelled out: `Tensor.softmax` over rows shorter than 16 takes a slow path on CPUs
    (16 ms against 2.7 ms for 61,440 rows of 15).
    """
    if kernel == "sdpa" or (kernel == "auto" and q.device.type != "cpu"):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)  # (B, H, Sq, Sk)
    if bias is not None:
        scores = scores + bias
    weights = (scores - scores.amax(-1, keepdim=True)).exp()
    weights = weights / weights.sum(-1, keepdim=True)
    if dropout:
        weights = F.dropout(weights, dropout)
    return weights @ v


class Block(nn.Module):
    """Pre-norm attention and MLP, each added to the residual stream."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int = 4, dropout: float = 0.0,
                 kernel: str = "auto") -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads, dropout, kernel)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model),
            nn.GELU(),
            nn.Linear(mlp_ratio * d_model, d_model),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: list, bias: torch.Tensor | None = None,
                rotation: tuple | None = None, tail: int | None = None) -> torch.Tensor:
        attended = self.attn(self.ln1(x), cache, bias, rotation, tail)
        x = x if tail is None else x[:, -tail:]
        x = x + self.drop(attended)
        return x + self.drop(self.mlp(self.ln2(x)))


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of channels (first half with second half) of (B, H, S, hd) by per-position angles."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
