"""The one KV-cache shim for genrec's beam searches (SID recommender and LLM recommender).

transformers 5.24 renamed the forward argument / output field `past_key_values` to `cache`; these
helpers accept either. Beam search repeats a prompt's cache once per beam and reorders it after each
step; beams never leave their user, so an encoder-decoder cache only reorders its self-attention part
(the cross-attention rows of one user's beams are identical).
"""
from __future__ import annotations

import inspect

import torch


def cache_kwarg(forward) -> str:
    """Name of the KV-cache argument of a forward (a module or its forward method)."""
    fn = getattr(forward, "forward", forward)
    return "cache" if "cache" in inspect.signature(fn).parameters else "past_key_values"


def output_cache(out):
    """The KV cache of a model output, whichever field holds it."""
    cache = out.get("cache") if hasattr(out, "get") else getattr(out, "cache", None)
    return cache if cache is not None else out["past_key_values"]


def repeat_cache(cache, times: int):
    """Repeat each row of the cache `times` times in place (prompt -> its beams); returns the cache."""
    cache.batch_repeat_interleave(int(times))
    return cache


def reorder_cache(cache, beam_index: torch.LongTensor):
    """Rows follow their parent beams (in place; returns the cache)."""
    target = getattr(cache, "self_attention_cache", cache)
    target.reorder_cache(beam_index)
    return cache
