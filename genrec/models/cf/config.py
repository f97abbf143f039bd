"""Config section for the CF embedding baselines (`cf:` in YAML; `run.model` picks the model).

Models: mf_bpr, neumf, lightgcn, sgl, sasrec (see genrec/models/cf/). Switches that apply to the
dot-product models: `normalize` (cosine scores / tau), `adap_tau` (per-user adaptive temperature,
implies normalize), `directspec` (+ `directspec_plus`) spectrum balancing, `num_embeddings` > 1
(multi-embedding, MF).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class CFConfig:
    dim: int = 64  # embedding width (total over all sets when num_embeddings > 1)
    loss: Literal["bpr", "bce", "sampled_softmax", "softmax"] = "bpr"
    num_negatives: int = 1  # per positive for bpr/bce; shared per batch for sampled_softmax (see shared_negatives)
    shared_negatives: bool = True  # sampled_softmax: one draw of negatives for the whole batch (False: per position)
    layers: int = 2  # LightGCN / SGL propagation layers; SASRec blocks
    heads: int = 1  # SASRec attention heads
    dropout: float = 0.2  # SASRec / NeuMF dropout
    max_len: int = 0  # SASRec sequence length (0 = data.max_history)
    init_std: float = 0.1  # normal init of id embeddings (SASRec uses xavier)
    reg: float = 0.0  # L2 on the batch's embeddings (per example)
    normalize: bool = False  # cosine scores with temperature tau
    tau: float = 0.1
    adap_tau: bool = False  # Adap-tau (Chen, Wu et al., WWW 2023): per-user adaptive temperature
    adap_tau_lambda: float = 1.0  # scale of the loss deviation inside the Lambert-W update
    directspec: bool = False  # DirectSpec spectrum balancing (Peng et al.)
    directspec_plus: bool = False  # the self-paced (softmax-weighted) DirectSpec+ form
    directspec_weight: float = 0.1
    directspec_tau: float = 0.5  # DirectSpec+ temperature
    directspec_rows: int = 256  # batch rows (users and items each) the regulariser looks at
    num_embeddings: int = 1  # multi-embedding (Guo et al., ICML 2024): >1 turns it on
    ssl_weight: float = 0.1  # SGL
    ssl_tau: float = 0.2
    ssl_dropout: float = 0.1  # SGL edge-dropout rate of each view
    mlp_layers: list[int] | None = None  # NeuMF MLP tower widths (default [2*dim, dim]); SASRec: [ffn width]
    ffn_act: Literal["gelu", "relu"] = "gelu"  # SASRec feed-forward activation (the original SASRec: relu)
    faiss: bool = False  # rank with a faiss inner-product index (dot-product models) instead of score()
