"""Pure ranking metrics for one held-out target per user.

A user's result is (g, t): g = items scored strictly above the target, t = other items tied with it.
Ties are broken uniformly at random *in expectation*: the target's rank is uniform on g+1 .. g+t+1 and
every metric is its exact expected value over that, so constant scores earn no credit and results do
not depend on item order. A top-K list gives t = 0 and g = position (or a miss).
"""
from __future__ import annotations

import numpy as np

MISS = np.iinfo(np.int64).max // 4


def _prefix(n: int, f) -> np.ndarray:
    """P[r] = sum_{j=1..r} f(j), P[0] = 0."""
    j = np.arange(1, n + 1, dtype=np.float64)
    return np.concatenate([[0.0], np.cumsum(f(j))])


def metrics_from_gt(greater: np.ndarray, ties: np.ndarray, ks: list[int]) -> dict[str, np.ndarray]:
    """Per-user expected recall@K, ndcg@K, mrr@K for every K (arrays of shape [n_users])."""
    g = np.asarray(greater, dtype=np.int64)
    t = np.asarray(ties, dtype=np.int64)
    kmax = max(ks)
    dcg = _prefix(kmax, lambda r: 1.0 / np.log2(r + 1.0))
    rr = _prefix(kmax, lambda r: 1.0 / r)
    out = {}
    for k in ks:
        lo = np.minimum(g, k)  # ranks g+1..g+t+1 intersected with 1..k
        hi = np.minimum(g + t + 1, k)
        n = (t + 1).astype(np.float64)
        out[f"recall@{k}"] = (hi - lo) / n
        out[f"ndcg@{k}"] = (dcg[hi] - dcg[lo]) / n
        out[f"mrr@{k}"] = (rr[hi] - rr[lo]) / n
    return out


def greater_ties_from_scores(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scores [B, n_items] (masked items at -inf), targets [B] -> (greater, ties excluding the target)."""
    tgt = scores[np.arange(len(targets)), targets][:, None]
    greater = (scores > tgt).sum(1)
    ties = (scores == tgt).sum(1) - 1
    return greater, ties


def positions_from_topk(topk: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based position of each target in its top-K list, MISS when absent."""
    hit = topk == targets[:, None]
    pos = np.where(hit.any(1), hit.argmax(1), MISS)
    return pos.astype(np.int64)


def summarize(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.mean(v)) if len(v) else float("nan") for k, v in per_user.items()}


def bootstrap_intervals(per_user: dict[str, np.ndarray], keys: list[str] | None = None, n_boot: int = 1000,
                        level: float = 0.95, seed: int = 0) -> dict[str, list[float]]:
    """Percentile bootstrap interval of each metric's mean over users (users resampled with replacement,
    n_boot times, numpy default_rng(seed)): how much the figure would move on another draw of test users.
    Every metric uses the same resamples. keys: the metrics to do (default: all)."""
    keys = list(per_user) if keys is None else keys
    n = len(next(iter(per_user.values()))) if per_user else 0
    if n == 0:
        return {k: [float("nan"), float("nan")] for k in keys}
    rng = np.random.default_rng(seed)
    out = {k: np.empty(n_boot) for k in keys}
    for start in range(0, n_boot, 100):  # blocks of 100 resamples: [100, n] indices at a time
        idx = rng.integers(0, n, size=(min(100, n_boot - start), n))
        for k in keys:
            out[k][start:start + len(idx)] = np.asarray(per_user[k], dtype=np.float64)[idx].mean(1)
    a = (1.0 - level) / 2
    return {k: [float(np.quantile(v, a)), float(np.quantile(v, 1 - a))] for k, v in out.items()}
