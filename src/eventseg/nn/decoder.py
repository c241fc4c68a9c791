"""Decoders: reconstruct a sequence from the customer embedding z.

Each decoder maps (z [B, E], encoded events [B, L, d_model], lengths [B]) to per-position
hidden states [B, L, d_model]; `OutputHeads` turns those into per-field predictions.
Outputs at real positions never depend on padding (causal GRU / key padding mask).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from eventseg.data.batch import FeatureSpec
from eventseg.nn.positions import PositionEncoding
from eventseg.nn.sequence_encoder import padding_mask, run_gru


class GRUDecoder(nn.Module):
    """Autoregressive GRU with teacher forcing.

    The initial state comes from z, and z is also added to every step's input so the
    decoder cannot drift away from it; the input at step t is the encoded event t-1
    (a learned start vector at t=0). The encoded events are the (possibly masked) encoder
    inputs, so input corruption also acts as word dropout for the decoder, which pushes it
    to rely on z rather than copying the previous event.
    """

    def __init__(self, embedding_dim: int, d_model: int, num_layers: int = 1, dropout: float = 0.1):
        super().__init__()
        self.num_layers = num_layers
        self.init_state = nn.Linear(embedding_dim, num_layers * d_model)
        self.z_to_input = nn.Linear(embedding_dim, d_model)
        self.start = nn.Parameter(torch.randn(d_model) * 0.02)
        self.gru = nn.GRU(
            d_model, d_model, num_layers=num_layers, batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, z: torch.Tensor, events: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, _, d = events.shape
        start = self.start.to(events.dtype).expand(b, 1, d)
        prev = torch.cat([start, events[:, :-1]], dim=1)
        inputs = prev + self.z_to_input(z).unsqueeze(1)
        h0 = torch.tanh(self.init_state(z)).view(b, self.num_layers, d).transpose(0, 1).contiguous()
        out = run_gru(self.gru, inputs, h0)
        return self.dropout(self.norm(out))


class TransformerDecoder(nn.Module):
    """Non-autoregressive: position queries (plus z) attend to memory tokens projected from z.

    Self-attention among the queries uses a key padding mask, so a sequence's outputs do not
    depend on how far the batch is padded.
    """

    def __init__(
        self,
        embedding_dim: int,
        d_model: int,
        num_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.1,
        n_memory: int = 4,
        positions: str = "sinusoidal",
        max_positions: int = 1024,
    ):
        super().__init__()
        self.n_memory = n_memory
        self.memory = nn.Linear(embedding_dim, n_memory * d_model)
        self.memory_norm = nn.LayerNorm(d_model)
        self.z_to_query = nn.Linear(embedding_dim, d_model)
        self.positions = PositionEncoding(d_model, positions, max_positions)
        layer = nn.TransformerDecoderLayer(
            d_model, n_heads, dim_feedforward=4 * d_model, dropout=dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.layers = nn.TransformerDecoder(layer, num_layers, norm=nn.LayerNorm(d_model))

    def forward(self, z: torch.Tensor, events: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        b, length, d = events.shape
        memory = self.memory_norm(self.memory(z).view(b, self.n_memory, d))
        queries = self.positions(length, z.device).unsqueeze(0) + self.z_to_query(z).unsqueeze(1)
        return self.layers(
            queries.to(memory.dtype), memory, tgt_key_padding_mask=~padding_mask(lengths, length)
        )


class OutputHeads(nn.Module):
    """Per-position predictions: logits for each categorical field, one value per numeric column."""

    def __init__(self, spec: FeatureSpec, d_model: int):
        super().__init__()
        # A ModuleList, not a ModuleDict: field names may contain dots or clash with attributes.
        self.names = list(spec.categorical)
        self.categorical = nn.ModuleList(nn.Linear(d_model, card) for card in spec.categorical.values())
        self.numeric = nn.Linear(d_model, len(spec.numeric)) if spec.numeric else None

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        return {
            "logits": {name: head(h) for name, head in zip(self.names, self.categorical)},
            "numeric": self.numeric(h) if self.numeric is not None else h.new_zeros(*h.shape[:2], 0),
        }


def _gru(embedding_dim: int, d_model: int, num_layers: int, n_heads: int, dropout: float, **options) -> GRUDecoder:
    return GRUDecoder(embedding_dim, d_model, num_layers, dropout, **options)


# Factories called as f(embedding_dim=, d_model=, num_layers=, n_heads=, dropout=, **options),
# returning a module with forward(z, events, lengths) -> [B, L, d_model].
DECODERS: dict[str, Callable[..., nn.Module]] = {"gru": _gru, "transformer": TransformerDecoder}
