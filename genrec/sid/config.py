"""Config sections for the SID family: the quantizer (tokenizer) and the sequential recommender."""
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
    epochs: int = 200
    batch_size: int = 1024
    lr: float = 1e-3
    kmeans_init: bool = True
    disambiguate: bool = True  # append a level that makes item <-> SID a bijection
    tokenizer_path: str = ""  # load a trained tokenizer folder instead of training one


@dataclass
class SIDModelConfig:
    arch: Literal["encoder_decoder", "decoder_only"] = "encoder_decoder"
    num_layers: int = 4  # encoder layers (decoder_only: total layers)
    num_decoder_layers: int = 4
    d_model: int = 128
    num_heads: int = 6
    d_kv: int = 64
    d_ff: int = 1024
    dropout: float = 0.1
    user_tokens: int = 0  # hashed user-id tokens (0 = no user token)
    num_beams: int = 20
    inject: Literal["none", "cf", "encoder"] = "none"
    inject_hidden: int = 256
