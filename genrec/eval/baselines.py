"""Popularity and random baselines, scored through the same protocol as every model."""
from __future__ import annotations

import numpy as np
import torch


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


def run_baseline(ctx):
    """Family entry point: `run.model` is popularity or random."""
    from genrec.errors import ConfigError
    from genrec.pipeline import FamilyResult

    name = ctx.cfg.run.model
    if name not in BASELINES:
        raise ConfigError(f"run.model: unknown baseline {name!r} (known: {', '.join(BASELINES)})")
    cls = BASELINES[name]
    model = cls(ctx.data.n_items) if name == "popularity" else cls(ctx.data.n_items, ctx.cfg.run.seed)
    model.fit(ctx.split)
    return FamilyResult(model, {"params_total": 0, "params_non_embedding": 0, "params_trainable": 0})
