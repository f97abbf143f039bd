"""SGL-ED (Wu et al., SIGIR 2021): LightGCN plus a self-supervised task. Each epoch draws two
edge-dropout views of the training graph (each edge kept with probability 1 - cf.ssl_dropout, then
re-normalised); the batch's users and items, propagated in the two views, are contrasted with InfoNCE
(temperature cf.ssl_tau, in-batch negatives over the unique ids), weighted by cf.ssl_weight.
"""
from __future__ import annotations

import torch

from genrec.models.cf.lightgcn import LightGCN, normalized_adjacency
from genrec.models.cf.losses import info_nce
from genrec.models.cf.registry import register


class SGL(LightGCN):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._views: tuple | None = None

    def on_epoch_start(self, epoch: int, gen: torch.Generator) -> None:
        super().on_epoch_start(epoch, gen)
        eu, ei = self.edge_users.cpu(), self.edge_items.cpu()
        dev = self.emb.weight.device
        p = self.cfg.ssl_dropout
        self._views = tuple(
            normalized_adjacency(eu, ei, self.n_users, self.n_items, torch.rand(len(eu), generator=gen) >= p).to(dev)
            for _ in range(2))

    def extra_loss(self, batch: dict):
        if self._views is None or self.cfg.ssl_weight == 0:
            return 0.0
        users = torch.unique(batch["users"])
        items = torch.unique(batch["pos"])
        (u1, i1), (u2, i2) = (self.tables(v) for v in self._views)
        t = self.cfg.ssl_tau
        return self.cfg.ssl_weight * (info_nce(u1[users], u2[users], t) + info_nce(i1[items], i2[items], t))


register("sgl", SGL)
