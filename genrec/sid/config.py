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
    epochs: int = 100  # rqvae; 100 x 15 minibatches of 256 on ML-1M's 3,706 items
    batch_size: int = 256
    lr: float = 1e-3
    kmeans_init: bool = True  # rqvae: k-means initialise each codebook on the first-epoch residuals
    kmeans_iters: int = 25  # Lloyd iterations (rqvae k-means init; rq_kmeans faiss niter)
    dead_code_restart: bool = True  # rqvae: re-seed codes unused in an epoch from current residuals
    disambiguate: bool = True  # append a level that makes item <-> SID a bijection
    tokenizer_path: str = ""  # load a trained tokenizer folder instead of training one
    device: str = "cpu"  # rqvae training: cpu (bit-reproducible anywhere) | auto | cuda[:i]


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
    feed_forward_proj: Literal["relu", "gated-gelu"] = "relu"  # T5 feed-forward (decoder_only: SwiGLU)
    user_tokens: int = 0  # hashed user-id tokens (0 = no user token)
    train_mode: Literal["prefix", "sequence"] = "prefix"  # sequence: one causal pass per window (decoder_only)
    sequence_window: Literal["last", "random"] = "random"  # sequence mode: last max_history+1 items or a random crop
    examples_per_epoch: int = 0  # 0 = all; N = a seeded sample of N prefix examples (sequence mode: N windows)
    inject: Literal["none", "cf", "encoder"] = "none"
    inject_hidden: int = 256
    inject_cf_dim: int = 64  # inject=cf: built-in MF-BPR embedding width
    inject_cf_epochs: int = 20
