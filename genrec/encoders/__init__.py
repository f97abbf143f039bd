"""Frozen text encoders: model resolver (local folder / HF cache or Hub / pinned wheels), one
`TextEncoder` interface and a fingerprinted embedding cache.

Import-light: torch, transformers and sentence-transformers load only when a model is used.
"""
from genrec.encoders.cache import encode_items
from genrec.encoders.resolve import MODELS, ResolvedModel, resolve_model

__all__ = ["MODELS", "ResolvedModel", "TextEncoder", "encode_items", "postprocess", "resolve_model"]


def __getattr__(name):  # TextEncoder / postprocess on first access
    if name in ("TextEncoder", "postprocess"):
        from genrec.encoders import text

        return getattr(text, name)
    raise AttributeError(f"module 'genrec.encoders' has no attribute {name!r}")
