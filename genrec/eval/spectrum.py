"""Embedding-collapse diagnostics: singular spectrum, effective rank, energy share, norm vs popularity,
and a rule that labels a metric-vs-dimension curve.

Effective rank (Roy & Vetterli, 2007): with p_k = sigma_k / sum_j sigma_j, erank = exp(-sum_k p_k log p_k);
it is n for n equal singular values, 1 for a rank-1 matrix, and never above the rank.
"""
from __future__ import annotations

import numpy as np
import torch


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def singular_values(x) -> np.ndarray:
    """Singular values of a matrix [n, d], descending (float64)."""
    a = _as_numpy(x)
    if a.ndim != 2:
        raise ValueError(f"singular_values: expected a 2-D matrix, got shape {a.shape}")
    if a.size == 0:
        return np.zeros(0)
    return np.linalg.svd(a, compute_uv=False)


def _sv(x) -> np.ndarray:
    a = _as_numpy(x)
    return singular_values(a) if a.ndim == 2 else np.sort(np.abs(a))[::-1]


def effective_rank(x, eps: float = 1e-12) -> float:
    """Entropy effective rank of a matrix (or of a 1-D array of its singular values)."""
    s = _sv(x)
    total = s.sum()
    if total <= eps:
        return 0.0
    p = s[s > eps * total] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def energy_share(x, k: int) -> float:
    """Share of the energy sum sigma^2 in the top-k singular values."""
    s = _sv(x)
    e = s ** 2
    return float(e[:k].sum() / e.sum()) if e.sum() > 0 else 0.0


def norm_popularity_spearman(emb, counts) -> float:
    """Spearman correlation between the L2 norm of each row and its popularity (training count)."""
    from scipy.stats import spearmanr

    norms = np.linalg.norm(_as_numpy(emb), axis=1)
    c = np.asarray(counts, dtype=np.float64)
    if len(norms) != len(c):
        raise ValueError(f"norm_popularity_spearman: {len(norms)} rows but {len(c)} counts")
    if len(c) < 3 or np.ptp(norms) == 0 or np.ptp(c) == 0:
        return float("nan")
    return float(spearmanr(norms, c).statistic)


def spectrum_report(user_emb, item_emb, item_counts, top_k=(1, 5, 10)) -> dict:
    """Everything the CF family saves: spectra, effective ranks, energy shares, norm-popularity rho."""
    out: dict = {}
    for name, m in (("user", user_emb), ("item", item_emb)):
        if m is None:
            continue
        s = singular_values(m)
        out[f"{name}_singular_values"] = [float(v) for v in s]
        out[f"{name}_erank"] = effective_rank(s)
        out[f"{name}_dim"] = int(_as_numpy(m).shape[1])
        for k in top_k:
            out[f"{name}_energy_top{k}"] = energy_share(s, k)
    if item_emb is not None and item_counts is not None:
        out["item_norm_pop_spearman"] = norm_popularity_spearman(item_emb, item_counts)
    return out


def classify_curve(dims, values, tol: float = 0.03, sem=None, z: float = 2.0) -> str:
    """Label a metric-vs-dimension curve "double-peak", "logarithmic" or "saturating".

    Rule (values are the mean over seeds; `tol` is relative to the curve's maximum; `sem`, optional,
    the standard error of each mean, std / sqrt(seeds)):
      * double-peak: after sorting by dim there are two local maxima i < j (interior points count
        if no neighbour is higher; the last point counts if it is above its left neighbour) such that
        the lowest value strictly between them is below BOTH peaks by more than tol * max and, when
        `sem` is given, by more than z standard errors of the difference (z * sqrt(sem_peak^2 +
        sem_valley^2)), so a dip within seed noise is not a peak. That is a rise, a real dip, and a
        second rise.
      * logarithmic: otherwise, if the curve still grows in its upper half of dims: the gain from the
        middle point to the last point is at least 25% of the total gain (max - first) and the last
        point is within tol * max of the maximum. A curve linear in log(dim) gains ~50% there.
      * saturating: everything else: the curve reaches its plateau (or its single peak, followed by
        a decline) in the lower half of dims, or is flat.
    """
    d = np.asarray(dims, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if len(d) != len(v) or len(v) < 3:
        raise ValueError("classify_curve: need >= 3 (dim, value) points of equal length")
    order = np.argsort(d)
    v = v[order]
    se = np.zeros_like(v) if sem is None else np.asarray(sem, dtype=np.float64).reshape(-1)
    if len(se) != len(v):
        raise ValueError("classify_curve: sem must have one entry per point")
    se = se[order]
    vmax = float(v.max())
    margin = tol * abs(vmax) if vmax != 0 else tol
    n = len(v)
    peaks = [i for i in range(1, n - 1) if v[i] >= v[i - 1] and v[i] >= v[i + 1]]
    if v[-1] > v[-2]:
        peaks.append(n - 1)
    if v[0] > v[1]:
        peaks.insert(0, 0)
    for a in range(len(peaks)):
        for b in range(a + 1, len(peaks)):
            i, j = peaks[a], peaks[b]
            if j - i < 2:
                continue
            k = i + 1 + int(np.argmin(v[i + 1:j]))
            valley = v[k]
            if all(v[p] - valley > max(margin, z * float(np.hypot(se[p], se[k]))) for p in (i, j)):
                return "double-peak"
    total = vmax - v[0]
    if total <= margin:
        return "saturating"
    mid = (n - 1) // 2
    late = v[-1] - v[mid]
    if late >= 0.25 * total and vmax - v[-1] <= margin:
        return "logarithmic"
    return "saturating"
