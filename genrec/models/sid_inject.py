"""External per-item vectors for the injection ablation: a small seeded MF-BPR on the training split.

(The full CF family lives in genrec.models.cf; this stays small on purpose.)
"""
from __future__ import annotations

import numpy as np
import torch


def mf_bpr_item_embeddings(train: list[np.ndarray], n_users: int, n_items: int, dim: int = 64,
                           epochs: int = 20, lr: float = 5e-3, reg: float = 1e-5, batch_size: int = 4096,
                           seed: int = 0) -> np.ndarray:
    """Item factors [n_items, dim] of a BPR matrix factorisation on the (user, item) training pairs."""
    lens = np.fromiter((len(s) for s in train), dtype=np.int64, count=len(train))
    if lens.sum() == 0:
        raise ValueError("mf_bpr_item_embeddings: no training interactions")
    users = torch.from_numpy(np.repeat(np.arange(len(train)), lens))
    items = torch.from_numpy(np.concatenate(train).astype(np.int64))
    g = torch.Generator().manual_seed(seed)
    U = torch.nn.Parameter(torch.randn(n_users, dim, generator=g) * 0.1)
    I = torch.nn.Parameter(torch.randn(n_items, dim, generator=g) * 0.1)
    opt = torch.optim.Adam([U, I], lr=lr)
    for _ in range(epochs):
        perm = torch.randperm(len(users), generator=g)
        for s in range(0, len(perm), batch_size):
            b = perm[s:s + batch_size]
            u, p = U[users[b]], I[items[b]]
            n = I[torch.randint(0, n_items, (len(b),), generator=g)]
            loss = -torch.nn.functional.logsigmoid((u * (p - n)).sum(1)).mean()
            loss = loss + reg * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / len(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return I.detach().numpy().astype(np.float32)
