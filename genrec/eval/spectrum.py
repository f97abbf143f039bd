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


LABELS = ("double-peak", "collapse", "logarithmic", "saturating")


def noise_threshold(sem_a: float, sem_b: float, n_a: int | None, n_b: int | None, level: float = 0.95,
                    z: float = 2.0) -> float:
    """Half-width of the two-sided `level` interval of the difference of two seed means.

    q * sqrt(sem_a^2 + sem_b^2) with q the Student t quantile t_{(1+level)/2, df}, df = min(n_a, n_b) - 1
    (the fewer seeds of the two; 4.30 for 3 seeds, 3.18 for 4, 2.78 for 5 at 95%). Without seed counts
    (None) q is the fixed large-sample `z`."""
    spread = float(np.hypot(sem_a, sem_b))
    if n_a is None or n_b is None:
        return z * spread
    df = min(n_a, n_b) - 1
    if df < 1:
        raise ValueError("noise_threshold: a t threshold needs >= 2 seeds per point")
    from scipy.stats import t

    return float(t.ppf((1 + level) / 2, df)) * spread


def _seed_counts(n_seeds, n: int) -> list:
    """One seed count per point (None when not given)."""
    if n_seeds is None:
        return [None] * n
    arr = np.asarray(n_seeds, dtype=np.int64)
    counts = np.full(n, int(arr)) if arr.ndim == 0 else arr.reshape(-1)
    if len(counts) != n:
        raise ValueError("classify_curve: n_seeds must be one count or one count per point")
    return [int(c) for c in counts]


def mean_above(v, se, ns, hi: int, lo: int, tol: float = 0.03, level: float = 0.95, z: float = 2.0) -> bool:
    """Is mean v[hi] above v[lo] beyond noise: by more than tol x the largest |mean| (tol itself when that is
    0) and, when standard errors `se` are given, more than noise_threshold of the two (seed counts ns, one per
    point, None for the fixed z)? The comparison every rule of classify_curve makes."""
    vmax = float(np.max(v))
    margin = tol * abs(vmax) if vmax != 0 else tol
    noise = noise_threshold(se[hi], se[lo], ns[hi], ns[lo], level, z) if se is not None else 0.0
    return bool(v[hi] - v[lo] > max(margin, noise))


def classify_curve(dims, values, tol: float = 0.03, sem=None, n_seeds=None, z: float = 2.0,
                   level: float = 0.95) -> str:
    """Label a metric-vs-dimension curve "double-peak", "collapse", "logarithmic" or "saturating".

    Inputs: `values` are means over seeds; `sem`, optional, the standard error of each mean
    (std / sqrt(seeds)); `n_seeds`, optional, the number of seeds (one count, or one per point).
    Two means a, b differ "beyond noise" when |a - b| > max(tol * max, q * sqrt(sem_a^2 + sem_b^2)):
    tol is relative to the curve's maximum; q is the Student t quantile for the two-sided `level`
    (95%) with min(n_a, n_b) - 1 degrees of freedom (noise_threshold), or the fixed `z` (2) when
    n_seeds is not given; without `sem` only the tol part counts. The first rule that holds wins:
      * double-peak: after sorting by dim there are two local maxima i < j (interior points count
        if no neighbour is higher; the first/last point counts if it is above its neighbour) such that
        the lowest value strictly between them is below BOTH peaks beyond noise: a rise, a real dip,
        and a second rise.
      * collapse: the curve's maximum is before its largest dim and the value at the largest dim is
        below that maximum beyond noise (a large-d drop with no second rise; a second rise beyond
        noise would have been a double peak).
      * logarithmic: the curve still grows in its upper half of dims: the gain from the middle point
        to the last point is at least 25% of the total gain (max - first) and the last point is
        within tol * max of the maximum. A curve linear in log(dim) gains ~50% there.
      * saturating: everything else: a plateau reached in the lower half of dims (a late decline
        within noise included), or a flat curve.
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
    counts = _seed_counts(n_seeds, len(v))
    ns = [counts[i] for i in order]
    vmax = float(v.max())
    margin = tol * abs(vmax) if vmax != 0 else tol

    def beyond(hi: int, lo: int) -> bool:  # v[hi] above v[lo] beyond noise
        return mean_above(v, se if sem is not None else None, ns, hi, lo, tol, level, z)

    n = len(v)
    if _has_double_peak(v, beyond):
        return "double-peak"
    top = int(np.argmax(v))
    if top < n - 1 and beyond(top, n - 1):
        return "collapse"
    total = vmax - v[0]
    if total <= margin:
        return "saturating"
    late = v[-1] - v[(n - 1) // 2]
    if late >= 0.25 * total and vmax - v[-1] <= margin:
        return "logarithmic"
    return "saturating"


def _has_double_peak(v: np.ndarray, beyond) -> bool:
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
            if beyond(i, k) and beyond(j, k):
                return True
    return False
