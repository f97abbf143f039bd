"""The `baseline` family: popularity and random, scored through the same protocol as every model.

A popularity run saves its training counts to <run_dir>/popularity_counts.json, so `load` (and
genrec.inference.load_run) rebuilds it without the data; random needs only the item count and the seed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from genrec.errors import ConfigError
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
COUNTS_FILE = "popularity_counts.json"


class BaselineFamily(Family):
    name = "baseline"
    models = tuple(BASELINES)

    def run(self, ctx) -> FamilyResult:
        name = ctx.cfg.run.model
        model = Popularity(ctx.data.n_items) if name == "popularity" else RandomScores(ctx.data.n_items,
                                                                                        ctx.cfg.run.seed)
        model.fit(ctx.split)
        if name == "popularity":
            (Path(ctx.run_dir) / COUNTS_FILE).write_text(json.dumps([float(c) for c in model.counts.tolist()]))
        return FamilyResult(model, {"params_total": 0, "params_non_embedding": 0, "params_trainable": 0},
                            {"train_examples": 0})  # counting needs no training compute (genrec.compute)

    def load(self, run_dir, cfg):
        run_dir = Path(run_dir)
        n_items = len(json.loads((run_dir / "item_ids.json").read_text()))
        if cfg.run.model == "random":
            return RandomScores(n_items, cfg.run.seed)
        path = run_dir / COUNTS_FILE
        if not path.is_file():
            raise ConfigError(f"{run_dir}: no {COUNTS_FILE} (a popularity run from before it was saved: run it again)")
        model = Popularity(n_items)
        model.counts = torch.tensor(json.loads(path.read_text()), dtype=torch.float32)
        return model


register_family(BaselineFamily())
