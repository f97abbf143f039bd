"""Item CF vectors for the cf_inject variant: the CF family's MF-BPR (`fit_item_embeddings`).

The result is cached as a .npy under the run folder (it is a function of split, n_items, dim, epochs, seed).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from genrec.models.cf.family import fit_item_embeddings, mf_bpr_settings


def item_cf_vectors(split, n_items: int, dim: int, seed: int, cache: Path | None = None,
                    epochs: int = 30, device: str = "cpu") -> tuple[np.ndarray, dict]:
    """(item vectors float32 [n_items, dim], the MF-BPR settings a row records as `inject_cf`)."""
    settings = mf_bpr_settings(dim, epochs, seed)
    if cache is not None and cache.is_file():
        arr = np.load(cache)
        if arr.shape == (n_items, dim):
            return arr, settings
    arr = np.asarray(fit_item_embeddings(split, n_items, dim, seed, epochs=epochs, device=device), dtype=np.float32)
    if arr.shape != (n_items, dim):
        raise ValueError(f"CF item vectors have shape {arr.shape}, expected {(n_items, dim)}")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, arr)
    return arr, settings
