"""Event encoder: turns each event's fields into one d_model vector."""

from __future__ import annotations

import torch
from torch import nn

from eventseg.data.batch import FeatureSpec


def embedding_dim_for(cardinality: int, max_dim: int = 64) -> int:
    """Embedding width for a field: grows sub-linearly with the vocabulary, capped.

    The 1.6 * n^0.56 rule (fastai's heuristic) keeps small fields cheap and stops fields
    with thousands of values from dominating the concatenated event vector.
    """
    return max(2, min(max_dim, round(1.6 * cardinality**0.56)))


class EventEncoder(nn.Module):
    """One embedding table per categorical field plus the numeric columns, projected to d_model.

    The numeric columns go straight into the projection: a separate numeric Linear followed by
    the projection would be two linear maps in a row, i.e. one linear map with extra cost.
    Code 0 (padding) embeds to zeros; padded positions are ignored downstream anyway.
    """

    def __init__(self, spec: FeatureSpec, d_model: int, dropout: float = 0.1, max_cat_dim: int = 64):
        super().__init__()
        if not spec.categorical and not spec.numeric:
            raise ValueError("FeatureSpec has no categorical fields and no numeric columns")
        self.embeddings = nn.ModuleList(
            nn.Embedding(card, embedding_dim_for(card, max_cat_dim), padding_idx=0)
            for card in spec.categorical.values()
        )
        d_in = sum(e.embedding_dim for e in self.embeddings) + len(spec.numeric)
        self.project = nn.Linear(d_in, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """categorical int64 [B, L, C], numeric float [B, L, F] -> [B, L, d_model]."""
        parts = [emb(categorical[..., i]) for i, emb in enumerate(self.embeddings)]
        parts.append(numeric.to(self.project.weight.dtype))
        return self.dropout(self.norm(self.project(torch.cat(parts, dim=-1))))
