"""SID table math (pure numpy, vectorised): collisions, disambiguation, codebook statistics, lookup keys."""
from __future__ import annotations

import numpy as np

from genrec.errors import DataError


def check_codes(codes: np.ndarray, name: str = "codes") -> np.ndarray:
    c = np.asarray(codes)
    if c.ndim != 2 or not np.issubdtype(c.dtype, np.integer):
        raise DataError(f"{name}: expected an integer array [n_items, levels], got {c.dtype} {c.shape}")
    if c.size and c.min() < 0:
        raise DataError(f"{name}: codes must be >= 0")
    return c.astype(np.int64, copy=False)


def collision_groups(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each item: (size of the group of items sharing its full code tuple, its rank 0.. within the group).

    Ranks follow item order, so the first item of a colliding group gets 0, the next 1, ... (as TIGER does).
    """
    c = check_codes(codes)
    n = len(c)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, inverse, counts = np.unique(c, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")  # groups contiguous, items ascending inside each group
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - starts[inverse[order]]
    return counts[inverse].astype(np.int64), rank


def disambiguate(codes: np.ndarray) -> np.ndarray:
    """Append one level (rank within the colliding group) so that every item has a distinct tuple."""
    c = check_codes(codes)
    _, rank = collision_groups(c)
    return np.concatenate([c, rank[:, None]], axis=1)


def perplexity(counts: np.ndarray) -> float:
    """exp(entropy) of a usage histogram: K for uniform use of K codes, 1 for a single code."""
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def code_stats(codes: np.ndarray, codebook_size: int) -> dict:
    """Collision and codebook statistics of raw quantizer codes [n_items, levels] (before disambiguation).

    collision_rate: share of items whose full tuple is shared with at least one other item;
    codebook_util: used codes / codebook size (mean over levels; per level in codebook_util_per_level);
    codebook_perplexity: exp(entropy) of code usage (mean over levels; per level in ..._per_level).
    """
    c = check_codes(codes)
    n, levels = c.shape
    if c.size and c.max() >= codebook_size:
        raise DataError(f"codes: found code {int(c.max())} >= codebook_size {codebook_size}")
    sizes, _ = collision_groups(c)
    util, ppl = [], []
    for level in range(levels):
        counts = np.bincount(c[:, level], minlength=codebook_size)
        util.append(float((counts > 0).sum() / codebook_size))
        ppl.append(perplexity(counts))
    return {
        "n_items": int(n),
        "collision_rate": float((sizes > 1).mean()) if n else 0.0,
        "max_group_size": int(sizes.max()) if n else 0,
        "n_unique_sids": int(len(np.unique(c, axis=0))) if n else 0,
        "codebook_util": float(np.mean(util)) if util else 0.0,
        "codebook_perplexity": float(np.mean(ppl)) if ppl else 0.0,
        "codebook_util_per_level": util,
        "codebook_perplexity_per_level": ppl,
    }


def radix_keys(codes: np.ndarray, vocab_sizes: list[int]) -> np.ndarray:
    """One int64 per code tuple (mixed radix over vocab_sizes); tuples outside the vocab (or < 0) get -1."""
    c = np.asarray(codes, dtype=np.int64).reshape(-1, np.asarray(codes).shape[-1] if np.ndim(codes) else 0)
    if c.shape[1] != len(vocab_sizes):
        raise DataError(f"codes: expected {len(vocab_sizes)} levels, got {c.shape[1]}")
    if float(np.prod(np.asarray(vocab_sizes, dtype=np.float64))) >= 2.0 ** 62:
        raise DataError(f"vocab sizes {vocab_sizes}: code space too large for int64 keys")
    bad = ((c < 0) | (c >= np.asarray(vocab_sizes, dtype=np.int64))).any(1)
    c = np.where(bad[:, None], 0, c)
    keys = np.zeros(len(c), np.int64)
    for level, v in enumerate(vocab_sizes):
        keys = keys * v + c[:, level]
    keys[bad] = -1
    return keys
