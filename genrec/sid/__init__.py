"""Semantic-ID tokenizers: item embeddings -> quantizer (RQ-VAE or residual k-means) -> SID table.

Heavy imports (torch, transformers, faiss) happen on first use of the names below.
"""
from __future__ import annotations

from genrec.sid.config import SIDConfig

__all__ = ["SIDConfig", "SIDTokenizer", "train_tokenizer", "get_tokenizer", "RQVAEConfig",
           "RQVAEModel", "RQKMeans"]

_LAZY = {
    "SIDTokenizer": "genrec.sid.tokenizer",
    "train_tokenizer": "genrec.sid.tokenizer",
    "get_tokenizer": "genrec.sid.tokenizer",
    "RQVAEConfig": "genrec.sid.configuration_rqvae",
    "RQVAEModel": "genrec.sid.modeling_rqvae",
    "RQKMeans": "genrec.sid.rq_kmeans",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'genrec.sid' has no attribute {name!r}")
