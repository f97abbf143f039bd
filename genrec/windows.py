"""History windows: the one place that cuts the last `width` items out of variable-length sequences.

Every sequential family (SID recommender, LLM prompts, SASRec) builds its inputs with these, so
"the last N items" means the same thing everywhere. Vectorised (no per-row Python loop).
"""
from __future__ import annotations

import numpy as np


def flatten(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(all items concatenated as int64, start offsets, end offsets) of a list of sequences."""
    lens = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    flat = (np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs]) if lens.sum()
            else np.zeros(0, dtype=np.int64))
    ends = np.cumsum(lens)
    return flat, ends - lens, ends


def gather_window(flat: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int, pad: int = -1,
                  trim: bool = True) -> np.ndarray:
    """Rows flat[max(start, end - width):end], right-aligned and left-padded with `pad`: int64 [B, W].

    With `trim`, W = min(width, longest row) (columns that would be padding in every row are dropped
    on the host, so a model never trims inside a step); without it, W = width.
    """
    width = int(min(width, (ends - starts).max(initial=0)) if trim else width)
    idx = ends[:, None] - width + np.arange(width)[None, :]
    ok = idx >= starts[:, None]
    out = np.full(idx.shape, pad, dtype=np.int64)
    out[ok] = flat[idx[ok]]
    return out


def last_items(histories: list[np.ndarray], width: int, pad: int = -1, trim: bool = True) -> np.ndarray:
    """The last `width` items of each history, right-aligned, left-padded with `pad` (see gather_window)."""
    if len(histories) == 0:
        return np.zeros((0, 0 if trim else width), dtype=np.int64)
    flat, starts, ends = flatten(histories)
    return gather_window(flat, starts, ends, width, pad, trim)
