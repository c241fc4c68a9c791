"""Position encodings for the transformer encoder and decoder."""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionEncoding(nn.Module):
    """Returns [L, d_model] position vectors, "sinusoidal" (any length) or "learned".

    Sinusoidal is the default because it needs no maximum length: histories longer than
    anything seen in training still get sensible positions. "learned" needs max_positions.
    """

    def __init__(self, d_model: int, kind: str = "sinusoidal", max_positions: int = 1024):
        super().__init__()
        if kind not in ("sinusoidal", "learned"):
            raise ValueError(f"positions must be 'sinusoidal' or 'learned', got {kind!r}")
        self.kind = kind
        self.d_model = d_model
        self.max_positions = max_positions
        if kind == "learned":
            self.table = nn.Embedding(max_positions, d_model)
            nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, length: int, device: torch.device) -> torch.Tensor:
        steps = torch.arange(length, device=device)
        if self.kind == "learned":
            if length > self.max_positions:
                raise ValueError(
                    f"sequence length {length} exceeds max_positions={self.max_positions} of the "
                    "learned position table; raise max_positions or use positions='sinusoidal'"
                )
            return self.table(steps)
        half = self.d_model // 2
        freqs = torch.exp(torch.arange(half, device=device) * (-math.log(10000.0) / half))
        angles = steps[:, None].float() * freqs[None, :]
        enc = torch.cat([angles.sin(), angles.cos()], dim=-1)
        if self.d_model % 2:
            enc = nn.functional.pad(enc, (0, 1))
        return enc
