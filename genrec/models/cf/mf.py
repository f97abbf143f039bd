"""Matrix factorisation (MF-BPR by default): one id embedding per user and per item, dot-product scores.

Multi-embedding (Guo et al., "On the Embedding Collapse When Scaling Up Recommendation Models",
ICML 2024): with `cf.num_embeddings = K > 1` each id gets K embedding sets of dim/K each (same total
width and parameter count as K = 1). The interaction is computed per set and the K results are averaged.
A plain dot product per set would add up to one dim-wide dot product (ME then equals a single embedding,
as Guo et al. note for interaction-free models), so each set's interaction is its cosine, and the mean
over sets is divided by tau: score = (1/K) sum_k cos(u_k, i_k) / tau.
"""
from __future__ import annotations

import torch
from torch import nn

from genrec.models.cf.base import CFModel
from genrec.models.cf.registry import register


class MF(CFModel):
    supports_multi = True

    def __init__(self, cfg, n_users: int, n_items: int, max_len: int = 50, seed: int = 0):
        super().__init__(cfg, n_users, n_items, max_len, seed)
        self.user_emb = nn.Embedding(n_users, cfg.dim)
        self.item_emb = nn.Embedding(n_items, cfg.dim)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.user_emb.weight.normal_(0, cfg.init_std, generator=g)
            self.item_emb.weight.normal_(0, cfg.init_std, generator=g)

    def tables(self):
        return self.user_emb.weight, self.item_emb.weight


register("mf_bpr", MF)
