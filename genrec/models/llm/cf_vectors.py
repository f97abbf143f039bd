"""Item CF vectors for the cf_inject variant: the CF family's MF-BPR when present, else a tiny inline one.

The result is cached as a .npy under the run folder (it is a function of split, n_items, dim, seed).
"""
from __future__ import annotations

import inspect
import logging
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("genrec")


def _inline_mf_bpr(split, n_items: int, dim: int, seed: int, epochs: int = 20, batch: int = 4096,
                   lr: float = 0.01) -> np.ndarray:
    """Seeded MF with the BPR loss on the training interactions (uniform negatives), CPU, vectorised."""
    g = torch.Generator().manual_seed(seed)
    users, items = split.train_pairs()
    n_users = len(split.train)
    u_emb = torch.nn.Parameter(torch.randn(n_users, dim, generator=g) * 0.1)
    i_emb = torch.nn.Parameter(torch.randn(n_items, dim, generator=g) * 0.1)
    opt = torch.optim.Adam([u_emb, i_emb], lr=lr)
    u_t, i_t = torch.from_numpy(users), torch.from_numpy(items)
    for _ in range(epochs):
        perm = torch.randperm(len(u_t), generator=g)
        for s in range(0, len(perm), batch):
            p = perm[s: s + batch]
            u, pos = u_t[p], i_t[p]
            neg = torch.randint(0, n_items, (len(p),), generator=g)
            x = (u_emb[u] * (i_emb[pos] - i_emb[neg])).sum(-1)
            loss = torch.nn.functional.softplus(-x).mean() + 1e-4 * (u_emb[u].pow(2).sum() + i_emb[pos].pow(2).sum()
                                                                    + i_emb[neg].pow(2).sum()) / len(p)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return i_emb.detach().numpy().astype(np.float32)


def item_cf_vectors(split, n_items: int, dim: int, seed: int, cache: Path | None = None,
                    epochs: int = 20, device: str = "cpu") -> tuple[np.ndarray, str]:
    """(item vectors [n_items, dim], source name)."""
    if cache is not None and cache.is_file():
        arr = np.load(cache)
        if arr.shape == (n_items, dim):
            return arr, "cache"
    try:
        from genrec.models.cf import fit_item_embeddings
        source = "genrec.models.cf.fit_item_embeddings"
    except ImportError:
        fit_item_embeddings = None
        source = "inline MF-BPR"
    if fit_item_embeddings is not None:
        params = inspect.signature(fit_item_embeddings).parameters
        kw = {k: v for k, v in (("epochs", epochs), ("device", device)) if k in params}
        arr = np.asarray(fit_item_embeddings(split, n_items, dim, seed, **kw), dtype=np.float32)
    else:
        log.info("cf_inject: genrec.models.cf.fit_item_embeddings not available; fitting an inline MF-BPR")
        arr = _inline_mf_bpr(split, n_items, dim, seed, epochs=epochs)
    if arr.shape != (n_items, dim):
        raise ValueError(f"CF item vectors have shape {arr.shape}, expected {(n_items, dim)}")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, arr)
    return arr, source
