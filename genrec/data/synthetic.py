"""A seeded synthetic catalogue with item text and learnable structure, for fast tests.

Items fall into clusters; each user prefers one cluster (cluster sizes are skewed, so popularity is a
real but beatable baseline) and walks that cluster's item cycle: the next item is the successor with
probability 0.7, another item of the cluster with 0.25 (Zipf-weighted within the cluster), any
item with 0.05; like MovieLens, a user meets an item once (a step that lands on an item already seen
moves on along the cycle to the next unseen one, or to an unseen item of another cluster when the
cluster is used up), so no target is in its own history. Both a user-preference
model (MF) and a sequential model can learn it; text names the cluster and position so text encoders
carry signal.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

COLOURS = ["red", "green", "blue", "amber", "violet", "silver", "olive", "teal"]
KINDS = ["lamp", "novel", "guitar", "kettle", "jacket", "camera", "puzzle", "tent"]


def make_synthetic(n_users: int, n_items: int, seq_len: int, seed: int, n_clusters: int = 6):
    rng = np.random.default_rng(seed)
    cluster_of = np.sort(rng.integers(0, n_clusters, n_items))
    members = [np.flatnonzero(cluster_of == c) for c in range(n_clusters)]
    members = [m for m in members if len(m)]
    weights = np.array([len(m) for m in members], dtype=float) ** 1.5
    weights /= weights.sum()
    # within a cluster, jumps land on items with Zipf-like weights: a real popularity signal
    zipf = [1.0 / np.arange(1, len(m) + 1) ** 1.2 for m in members]
    zipf = [z / z.sum() for z in zipf]
    rows = []
    t = 1_000_000
    starts = np.cumsum([0] + [len(x) for x in members])
    for u in range(n_users):
        ci = rng.choice(len(members), p=weights)
        m = members[ci]
        pos = int(rng.choice(len(m), p=zipf[ci]))
        length = int(rng.integers(max(3, seq_len // 2), seq_len + 1))
        seen: set[int] = set()
        for _ in range(length):
            free = [j for j in range(len(m)) if m[(pos + j) % len(m)] not in seen]
            if free:
                pos = (pos + free[0]) % len(m)
            else:  # this cluster is used up: an unseen item anywhere
                nxt = int(rng.choice([i for i in range(n_items) if i not in seen]))
                ci = min(int(np.searchsorted(starts, nxt, side="right")) - 1, len(members) - 1)
                m, pos = members[ci], int(np.flatnonzero(members[ci] == nxt)[0])
            seen.add(int(m[pos]))
            rows.append((f"u{u}", f"i{m[pos]}", t))
            t += int(rng.integers(1, 100))
            r = rng.random()
            if r < 0.7:
                pos = (pos + 1) % len(m)
            elif r < 0.95:
                pos = int(rng.choice(len(m), p=zipf[ci]))
            else:
                nxt = int(rng.integers(n_items))
                ci = int(np.searchsorted(np.cumsum([len(x) for x in members]), nxt, side="right"))
                ci = min(ci, len(members) - 1)
                m = members[ci]
                pos = int(rng.choice(len(m), p=zipf[ci]))
    inter = pd.DataFrame(rows, columns=["user", "item", "timestamp"]).astype({"timestamp": str})
    items = pd.DataFrame({
        "item": [f"i{i}" for i in range(n_items)],
        "title": [f"{COLOURS[cluster_of[i] % 8]} {KINDS[cluster_of[i] % 8]} number {i}" for i in range(n_items)],
        "year": [str(1990 + i % 30) for i in range(n_items)],
        "genres": [f"cluster {cluster_of[i]}" for i in range(n_items)],
    })
    return inter, items
