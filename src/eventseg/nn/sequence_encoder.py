"""Sequence encoders: encoded events [B, L, d_model] + lengths -> one pooled vector per customer.

Both encoders are padding-invariant: a customer's vector depends only on its own first
`length` events, never on the padded length or on the other sequences in the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from eventseg.nn.positions import PositionEncoding


def run_gru(gru: nn.GRU, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """Run a GRU in its parameters' dtype with autocast off; returns all steps' outputs.

    Autocast sends cuDNN RNNs to float16 even under bf16-mixed, and bf16-mixed trains
    without a gradient scaler, so small GRU gradients would underflow. The recurrence is
    latency-bound at these widths, so full precision costs little.
    """
    dtype = gru.weight_ih_l0.dtype
    with torch.autocast(device_type=x.device.type, enabled=False):
        out, _ = gru(x.to(dtype), None if h0 is None else h0.to(dtype))
    return out


def padding_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """bool [B, L]: True where there is a real event."""
    return torch.arange(length, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x [B, L, D] over the positions where mask [B, L] is True."""
    m = mask.unsqueeze(-1)
    return torch.where(m, x, 0.0).sum(1) / m.sum(1).clamp_min(1).to(x.dtype)


class GRUSequenceEncoder(nn.Module):
    """GRU over the padded batch; pooled = the top layer's state after each sequence's last event.

    Why not pack_padded_sequence: a unidirectional GRU is causal, so its output at step
    length-1 never sees the padding behind it; gathering that step is exactly what packing
    would return. Packing needs the lengths on the CPU (a host sync on GPU) and breaks
    torch.compile graphs, while the padded run stays one cuDNN call.
    pool="last_mean" also concatenates the masked mean of all steps' outputs.
    """

    def __init__(self, d_model: int, num_layers: int = 1, dropout: float = 0.1, pool: str = "last"):
        super().__init__()
        if pool not in ("last", "last_mean"):
            raise ValueError(f"GRU pool must be 'last' or 'last_mean', got {pool!r}")
        self.pool = pool
        self.gru = nn.GRU(
            d_model, d_model, num_layers=num_layers, batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.out_dim = d_model * (2 if pool == "last_mean" else 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out = run_gru(self.gru, x)
        last_step = (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.shape[-1])
        last = out.gather(1, last_step).squeeze(1)
        if self.pool == "last":
            return last
        return torch.cat([last, masked_mean(out, padding_mask(lengths, x.shape[1]))], dim=-1)


class TransformerSequenceEncoder(nn.Module):
    """Pre-norm transformer encoder with a key padding mask; pooled by masked mean or a CLS token."""

    def __init__(
        self,
        d_model: int,
        num_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.1,
        pool: str = "mean",
        positions: str = "sinusoidal",
        max_positions: int = 1024,
    ):
        super().__init__()
        if pool not in ("mean", "cls"):
            raise ValueError(f"transformer pool must be 'mean' or 'cls', got {pool!r}")
        self.pool = pool
        self.positions = PositionEncoding(d_model, positions, max_positions)
        if pool == "cls":
            self.cls = nn.Parameter(torch.randn(d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward=4 * d_model, dropout=dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        # enable_nested_tensor is off: with norm_first it would be skipped anyway, and nested
        # tensors are a host-syncing eval-only path.
        self.layers = nn.TransformerEncoder(
            layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )
        self.out_dim = d_model

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = padding_mask(lengths, x.shape[1])
        x = x + self.positions(x.shape[1], x.device).to(x.dtype)
        if self.pool == "cls":
            x = torch.cat([self.cls.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)
            mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)
        h = self.layers(x, src_key_padding_mask=~mask)
        return h[:, 0] if self.pool == "cls" else masked_mean(h, mask)


def _gru(d_model: int, num_layers: int, n_heads: int, dropout: float, **options) -> GRUSequenceEncoder:
    return GRUSequenceEncoder(d_model, num_layers, dropout, **options)


# Factories called as f(d_model=, num_layers=, n_heads=, dropout=, **options); the result
# needs `out_dim` and forward(x, lengths). New encoders plug in by adding an entry.
SEQUENCE_ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "gru": _gru,
    "transformer": TransformerSequenceEncoder,
}
