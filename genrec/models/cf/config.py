"""Config section for the CF embedding baselines."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class CFConfig:
    dim: int = 64
    loss: Literal["bpr", "bce", "sampled_softmax", "softmax"] = "bpr"
    num_negatives: int = 1
    layers: int = 2  # LightGCN / SGL propagation layers; SASRec blocks
    heads: int = 1  # SASRec attention heads
    dropout: float = 0.2
    reg: float = 0.0  # L2 on embeddings
    normalize: bool = False  # cosine scores with temperature tau
    tau: float = 0.1
    adap_tau: bool = False
    directspec: bool = False
    directspec_weight: float = 0.1
    num_embeddings: int = 1  # multi-embedding (Guo et al., ICML 2024): >1 turns it on
    ssl_weight: float = 0.1  # SGL
    ssl_tau: float = 0.2
    ssl_dropout: float = 0.1
    mlp_layers: list[int] | None = None  # NeuMF MLP tower widths
