"""Config section `sid` of the SID family: the quantizer (tokenizer). The recommender's section,
`sid_model`, is defined by genrec.models.sid.configuration.SIDRecConfig."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class SIDConfig:
    quantizer: Literal["rqvae", "rq_kmeans"] = "rqvae"
    levels: int = 3
    codebook_size: int = 256
    latent_dim: int = 32
    hidden_dims: list[int] | None = None  # encoder MLP widths; None = [512, 256, 128]
    commitment_weight: float = 0.25
    epochs: int = 100  # rqvae; 100 x 15 minibatches of 256 on ML-1M's 3,706 items
    batch_size: int = 256
    lr: float = 1e-3
    kmeans_init: bool = True  # rqvae: k-means initialise each codebook on the first-epoch residuals
    kmeans_iters: int = 25  # Lloyd iterations (rqvae k-means init; rq_kmeans faiss niter)
    dead_code_restart: bool = True  # rqvae: re-seed codes unused in an epoch from current residuals
    disambiguate: bool = True  # append a level that makes item <-> SID a bijection
    tokenizer_path: str = ""  # load a trained tokenizer folder instead of training one
    device: str = "cpu"  # rqvae training: cpu (bit-reproducible anywhere) | auto | cuda[:i]
