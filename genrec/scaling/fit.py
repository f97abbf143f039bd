"""Scaling-law fits: Huber loss, L-BFGS, positive parameters, several inits, bootstrap intervals.

Two forms:

* `power`: saturating power law per axis, ``R = R0 - A / N**a``;
* `joint`: the joint form of arXiv 2509.25522,
  ``R = R0 - A / (N_RS + g1*N_LLM + g2*N_QT)**a - B / N_RS**b``.

Every parameter is kept positive by an exp reparametrisation. Sizes are divided by a reference size
(the geometric mean of the main size) before fitting, so the optimiser works on O(1) numbers; the
reported parameters are in the original units. Inits and bootstrap replicates are fitted together
as one batch: the loss is a sum of independent per-replicate losses, so one L-BFGS run solves all
of them at once (no Python loop over replicates).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from genrec.errors import ConfigError

FORMS = {
    "power": ("R0", "A", "a"),
    "joint": ("R0", "A", "a", "g1", "g2", "B", "b"),
}


def _predict_scaled(form: str, p: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """p: [B, k] positive params in scaled units; X: [n, m] scaled sizes -> [B, n]."""
    if form == "power":
        r0, a_amp, a = p[:, 0:1], p[:, 1:2], p[:, 2:3]
        return r0 - a_amp * X[None, :, 0] ** (-a)
    r0, a_amp, a, g1, g2, b_amp, b = (p[:, i:i + 1] for i in range(7))
    n_eff = X[None, :, 0] + g1 * X[None, :, 1] + g2 * X[None, :, 2]
    return r0 - a_amp * n_eff ** (-a) - b_amp * X[None, :, 0] ** (-b)


def _huber(r: torch.Tensor, delta: float) -> torch.Tensor:
    a = r.abs()
    return torch.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _lbfgs(form: str, theta0: torch.Tensor, X: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
           scale: float, delta: float, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise sum_b sum_i w[b,i] * huber((pred_b,i - y_i)/scale) over log-params theta [B, k]."""
    theta = theta0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, history_size=50, tolerance_grad=1e-12,
                            tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def per_rep() -> torch.Tensor:
        pred = _predict_scaled(form, theta.clamp(-30, 30).exp(), X)
        return (w * _huber((pred - y[None]) / scale, delta)).sum(1)

    def closure():
        opt.zero_grad()
        loss = per_rep().sum()
        loss.backward()
        return loss

    for _ in range(3):  # restarts refresh the curvature memory
        opt.step(closure)
    with torch.no_grad():
        loss = per_rep()
    bad = ~torch.isfinite(loss)
    loss = torch.where(bad, torch.full_like(loss, math.inf), loss)
    return theta.detach(), loss


@dataclass
class FitResult:
    form: str
    params: dict  # original units
    r2: float
    loss: float
    n_points: int
    ci: dict = field(default_factory=dict)  # name -> (lo, hi), bootstrap percentile interval
    x_ref: float = 1.0
    n_boot: int = 0

    def predict(self, n_rs, n_llm=None, n_qt=None) -> np.ndarray:
        X = _stack(self.form, n_rs, n_llm, n_qt)
        p = self.params
        if self.form == "power":
            return p["R0"] - p["A"] * X[:, 0] ** (-p["a"])
        n_eff = X[:, 0] + p["g1"] * X[:, 1] + p["g2"] * X[:, 2]
        return p["R0"] - p["A"] * n_eff ** (-p["a"]) - p["B"] * X[:, 0] ** (-p["b"])

    def summary(self) -> str:
        parts = []
        for k, v in self.params.items():
            s = f"{k}={v:.4g}"
            if k in self.ci:
                lo, hi = self.ci[k]
                s += f" [{lo:.3g}, {hi:.3g}]"
            parts.append(s)
        law = "R0 - A/N^a" if self.form == "power" else "R0 - A/(N_RS+g1*N_LLM+g2*N_QT)^a - B/N_RS^b"
        return f"{law}: " + ", ".join(parts) + f"; R^2={self.r2:.4f} over {self.n_points} points"

    def to_dict(self) -> dict:
        return {"form": self.form, "params": self.params, "r2": self.r2, "loss": self.loss,
                "n_points": self.n_points, "ci": {k: list(v) for k, v in self.ci.items()}, "n_boot": self.n_boot}


def _stack(form: str, n_rs, n_llm=None, n_qt=None) -> np.ndarray:
    n_rs = np.asarray(n_rs, dtype=np.float64).reshape(-1)
    if form == "power":
        return n_rs[:, None]
    z = np.zeros_like(n_rs)
    n_llm = z if n_llm is None else np.asarray(n_llm, dtype=np.float64).reshape(-1)
    n_qt = z if n_qt is None else np.asarray(n_qt, dtype=np.float64).reshape(-1)
    return np.stack([n_rs, n_llm, n_qt], 1)


def _to_original(form: str, p: np.ndarray, x_ref: float) -> dict:
    """Scaled-unit params [k] -> original units (A and B absorb the reference size)."""
    d = dict(zip(FORMS[form], map(float, p)))
    d["A"] = d["A"] * x_ref ** d["a"]
    if form == "joint":
        d["B"] = d["B"] * x_ref ** d["b"]
    return d


def _inits(form: str, y: np.ndarray) -> np.ndarray:
    """Initial positive params in scaled units (rows)."""
    top, spread = float(y.max()), float(np.ptp(y)) + 1e-3 * (abs(float(y.max())) + 1e-9)
    rows = []
    for a in (0.1, 0.3, 0.7, 1.5):
        for head in (0.05, 0.5):
            r0 = max(top + head * spread, 1e-9)
            amp = max(r0 - float(np.median(y)), 1e-9)
            if form == "power":
                rows.append([r0, amp, a])
            else:
                for g in (0.1, 1.0):
                    rows.append([r0, amp, a, g, g, 0.3 * amp, a])
    return np.asarray(rows, dtype=np.float64)


def fit_law(y, n_rs, n_llm=None, n_qt=None, form: str = "power", delta: float = 0.01, n_boot: int = 200,
            ci: float = 0.95, seed: int = 0, max_iter: int = 200) -> FitResult:
    """Fit `form` to points (sizes -> metric y); returns params, R^2 and bootstrap intervals.

    delta is the Huber threshold on residuals measured in units of mean |y|. n_boot=0 skips the
    bootstrap. Bootstrap replicates resample points with replacement (as integer weights).
    """
    if form not in FORMS:
        raise ConfigError(f"fit form {form!r}: expected one of {list(FORMS)}")
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    X = _stack(form, n_rs, n_llm, n_qt)
    keep = np.isfinite(y) & np.all(np.isfinite(X), 1) & (X[:, 0] > 0)
    y, X = y[keep], X[keep]
    k = len(FORMS[form])
    if len(np.unique(X, axis=0)) < k:
        raise ConfigError(f"{form} fit needs at least {k} distinct sizes, got {len(np.unique(X, axis=0))}")
    x_ref = float(np.exp(np.log(X[:, 0]).mean()))
    Xt = torch.from_numpy(X / x_ref)
    yt = torch.from_numpy(y)
    scale = max(float(np.abs(y).mean()), 1e-12)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        th0 = torch.from_numpy(np.log(_inits(form, y)))
        theta, loss = _lbfgs(form, th0, Xt, yt, torch.ones(len(th0), len(y), dtype=torch.float64), scale,
                             delta, max_iter)
        best = int(torch.argmin(loss))
        if not math.isfinite(float(loss[best])):
            raise ConfigError(f"{form} fit did not converge on {len(y)} points")
        ones = torch.ones(1, len(y), dtype=torch.float64)
        theta_b, loss_b = _lbfgs(form, theta[best:best + 1], Xt, yt, ones, scale, delta, max_iter)  # polish alone
        if float(loss_b[0]) <= float(loss[best]):
            theta, loss, best = theta_b, loss_b, 0
        p_best = theta[best].exp().numpy()
        pred = _predict_scaled(form, torch.from_numpy(p_best)[None], Xt)[0].numpy()
        ss_res = float(((y - pred) ** 2).sum())
        ss_tot = float(((y - y.mean()) ** 2).sum())
        r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
        res = FitResult(form, _to_original(form, p_best, x_ref), r2, float(loss[best]), len(y), x_ref=x_ref)
        if n_boot > 0:
            res.ci, res.n_boot = _bootstrap(form, theta[best], Xt, yt, scale, delta, max_iter, n_boot, ci,
                                            x_ref, seed)
    return res


def _bootstrap(form, theta_best, Xt, yt, scale, delta, max_iter, n_boot, ci, x_ref, seed):
    rng = np.random.default_rng(seed)
    n = len(yt)
    k = len(FORMS[form])
    idx = rng.integers(0, n, size=(n_boot, n))
    w = np.zeros((n_boot, n))
    np.add.at(w, (np.arange(n_boot)[:, None], idx), 1.0)
    # a replicate needs as many distinct sizes as parameters to be identifiable
    Xn = Xt.numpy()
    _, inv = np.unique(Xn, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    distinct = np.array([len(np.unique(inv[row > 0])) for row in w])
    w = w[distinct >= k]
    if len(w) == 0:
        return {}, 0
    th0 = theta_best[None].repeat(len(w), 1)
    theta, loss = _lbfgs(form, th0, Xt, yt, torch.from_numpy(w), scale, delta, max_iter)
    ok = torch.isfinite(loss).numpy()
    P = np.array([list(_to_original(form, p, x_ref).values()) for p in theta[ok].exp().numpy()])
    if len(P) == 0:
        return {}, 0
    lo_q, hi_q = 100 * (1 - ci) / 2, 100 * (1 + ci) / 2
    lo, hi = np.percentile(P, lo_q, axis=0), np.percentile(P, hi_q, axis=0)
    return {name: (float(lo[i]), float(hi[i])) for i, name in enumerate(FORMS[form])}, int(len(P))


def fit_power_law(n, y, **kw) -> FitResult:
    """R = R0 - A / N**a over one axis."""
    return fit_law(y, n, form="power", **kw)


def fit_joint(y, n_rs, n_llm, n_qt, **kw) -> FitResult:
    """R = R0 - A/(N_RS + g1*N_LLM + g2*N_QT)**a - B/N_RS**b (arXiv 2509.25522)."""
    return fit_law(y, n_rs, n_llm, n_qt, form="joint", **kw)
