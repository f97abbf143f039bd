"""The `baseline` family: popularity and random, scored through the same protocol as every model."""
from __future__ import annotations

import numpy as np
import torch

from genrec.family import Family, FamilyResult, register_family


class Popularity:
    """Scores every item by its count in the training interactions."""

    def __init__(self, n_items: int):
        self.n_items = n_items
        self.counts = torch.zeros(n_items)

    def fit(self, split) -> "Popularity":
        _, items = split.train_pairs()
        self.counts = torch.from_numpy(np.bincount(items, minlength=self.n_items).astype(np.float32))
        return self

    def score(self, users: torch.Tensor, histories) -> torch.Tensor:
        return self.counts.expand(len(users), -1)


class RandomScores:
    """Seeded random scores, a fresh draw per evaluation batch."""

    def __init__(self, n_items: int, seed: int = 0):
        self.n_items = n_items
        self.gen = torch.Generator().manual_seed(seed)

    def fit(self, split) -> "RandomScores":
        return self

    def score(self, users: torch.Tensor, histories) -> torch.Tensor:
        return torch.rand(len(users), self.n_items, generator=self.gen)


BASELINES = {"popularity": Popularity, "random": RandomScores}


class BaselineFamily(Family):
    name = "baseline"
    models = tuple(BASELINES)

    def run(self, ctx) -> FamilyResult:
        name = ctx.cfg.run.model
        model = Popularity(ctx.data.n_items) if name == "popularity" else RandomScores(ctx.data.n_items,
                                                                                        ctx.cfg.run.seed)
        model.fit(ctx.split)
        return FamilyResult(model, {"params_total": 0, "params_non_embedding": 0, "params_trainable": 0},
                            {"train_examples": 0})  # counting needs no training compute (genrec.compute)


register_family(BaselineFamily())
