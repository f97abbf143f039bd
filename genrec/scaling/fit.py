"""Scaling-law fits that say when the data cannot pin a parameter.

Forms: `power`, ``R = R0 - A / N**a`` per axis, and `joint` (arXiv 2509.25522),
``R = R0 - A / (N_RS + g1*N_LLM + g2*N_QT)**a - B / N_RS**b``. Parameters are kept positive by an exp
reparametrisation (exponents searched in [1e-3, 16]); sizes are divided by a reference size x_ref
(geometric mean of the main size); reported parameters are in the original units.

1. least-squares pilot fit from a grid of starts (exponents 0.05 .. 6);
2. Huber loss with threshold `delta` * s, s the normal-consistent MAD of the residuals (scipy): quadratic
   for typical residuals, linear for outliers; the robust fit is rerun three times, s re-estimated from
   its own residuals (so one wild point cannot inflate it);
3. profile of each parameter: fixed on a wide grid around the fit, the others refitted; its interval is
   where twice the loss rise stays under the F(1, n-k) quantile (scipy). A profile that stays under it
   out to the search edge means the parameter is *not identified* (listed with the reason);
4. bootstrap (points resampled): each replicate refitted from every grid start and the fit, best kept;
   `ci` holds percentile intervals of the identified parameters.

All these small fits run as one batch of rows, each row with its own Levenberg-Marquardt damping.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats

from genrec.errors import ConfigError

FORMS = {"power": ("R0", "A", "a"), "joint": ("R0", "A", "a", "g1", "g2", "B", "b")}
EXPONENTS = ("a", "b")
EXP_RANGE = (1e-3, 16.0)  # search range of the exponents
LOG_SPAN = math.log(1e4)  # other parameters are profiled from p/1e4 to p*1e4
N_PROFILE = 16  # profile grid points on each side of the fit
HUBER_DELTA = 1.345  # Huber threshold in units of the residual scale (95% efficiency for normal noise)


@dataclass
class _Data:
    form: str
    X: torch.Tensor  # [n, m] sizes / x_ref
    y: torch.Tensor  # [n]
    s: float  # residuals are divided by this scale
    delta: float  # Huber threshold in units of s; inf means least squares
    max_iter: int = 300


def _predict_scaled(form: str, p: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """p: [B, k] positive params in scaled units; X: [n, m] scaled sizes -> [B, n]."""
    if form == "power":
        r0, a_amp, a = p[:, 0:1], p[:, 1:2], p[:, 2:3]
        return r0 - a_amp * X[None, :, 0] ** (-a)
    r0, a_amp, a, g1, g2, b_amp, b = (p[:, i:i + 1] for i in range(7))
    n_eff = X[None, :, 0] + g1 * X[None, :, 1] + g2 * X[None, :, 2]
    return r0 - a_amp * n_eff ** (-a) - b_amp * X[None, :, 0] ** (-b)


def _rho(r: torch.Tensor, delta: float) -> torch.Tensor:
    if not math.isfinite(delta):
        return 0.5 * r * r
    a = r.abs()
    return torch.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def _bounds(form: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds of the log-parameters."""
    names = FORMS[form]
    lo = [math.log(EXP_RANGE[0]) if n in EXPONENTS else -100.0 for n in names]
    hi = [math.log(EXP_RANGE[1]) if n in EXPONENTS else 100.0 for n in names]
    return torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)


def _row_loss(d: _Data, theta: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    r = (_predict_scaled(d.form, theta.exp(), d.X) - d.y[None]) / d.s
    loss = (w * _rho(r, d.delta)).sum(1)
    return torch.where(torch.isfinite(loss), loss, torch.full_like(loss, math.inf))


def _residuals_jacobian(d: _Data, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled residuals r [B, n] and their Jacobian in the log-params theta [B, n, k] (closed form)."""
    p = theta.exp()
    X = d.X[None]
    if d.form == "power":
        r0, amp, a = p[:, 0:1], p[:, 1:2], p[:, 2:3]
        t1 = amp * X[..., 0] ** (-a)
        pred = r0 - t1
        cols = [r0.expand_as(t1), -t1, t1 * a * X[..., 0].log()]
    else:
        r0, amp, a, g1, g2, b_amp, b = (p[:, i:i + 1] for i in range(7))
        n_eff = X[..., 0] + g1 * X[..., 1] + g2 * X[..., 2]
        t1, t2 = amp * n_eff ** (-a), b_amp * X[..., 0] ** (-b)
        pred = r0 - t1 - t2
        cols = [r0.expand_as(t1), -t1, t1 * a * n_eff.log(), t1 * a * g1 * X[..., 1] / n_eff,
                t1 * a * g2 * X[..., 2] / n_eff, -t2, t2 * b * X[..., 0].log()]
    return (pred - d.y[None]) / d.s, torch.stack(cols, 2) / d.s


def _minimise(d: _Data, theta0: torch.Tensor, w: torch.Tensor | None = None,
              fixed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise each row's sum_i w[b,i] * rho((pred_b,i - y_i)/s) over log-params theta [B, k].

    Levenberg-Marquardt on reweighted (Huber) least squares; each row has its own damping and its own
    accept/reject, so rows converge independently. fixed [B, k]: entries that keep their theta0 value.
    """
    lo, hi = _bounds(d.form)
    B, k = theta0.shape
    w = torch.ones(B, len(d.y), dtype=torch.float64) if w is None else w
    free = torch.ones_like(theta0) if fixed is None else (~fixed).double()
    theta = theta0.clamp(lo, hi)
    loss = _row_loss(d, theta, w)
    lam = torch.full((B,), 1e-3, dtype=torch.float64)
    eye = torch.eye(k, dtype=torch.float64)
    stall = 0
    for _ in range(d.max_iter):
        r, J = _residuals_jacobian(d, theta)
        J, r = torch.nan_to_num(J * free[:, None, :], 0.0, 0.0, 0.0), torch.nan_to_num(r, 0.0, 0.0, 0.0)
        omega = w if not math.isfinite(d.delta) else w * (d.delta / r.abs().clamp(min=d.delta))
        JtW = J.transpose(1, 2) * omega[:, None, :]
        H, g = JtW @ J, (JtW @ r[..., None])[..., 0]
        diag = torch.diagonal(H, dim1=1, dim2=2)
        damp = lam[:, None] * (diag + 1e-9 * diag.mean(1, keepdim=True) + 1e-30)
        Hd = H + torch.diag_embed(damp) + (1 - free)[:, :, None] * eye
        step = -torch.linalg.solve_ex(Hd, g[..., None])[0][..., 0]  # no raise on a singular row
        cand = (theta + torch.nan_to_num(step) * free).clamp(lo, hi)
        new = _row_loss(d, cand, w)
        better = new < loss
        gain = torch.where(better, loss - new, torch.zeros_like(new))
        theta = torch.where(better[:, None], cand, theta)
        loss = torch.where(better, new, loss)
        lam = torch.where(better, lam / 3, lam * 4).clamp(1e-12, 1e12)
        stall = stall + 1 if bool((gain <= 1e-10 * (loss.abs() + 1e-3)).all()) else 0
        if stall >= 8:
            break
    return theta, loss


def _fit_best(d: _Data, starts: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Fit from every start, keep the best, polish it alone: (theta [k], loss)."""
    theta, loss = _minimise(d, starts)
    best = int(torch.argmin(loss))
    if not math.isfinite(float(loss[best])):
        raise ConfigError(f"{d.form} fit did not converge on {len(d.y)} points")
    theta_p, loss_p = _minimise(d, theta[best:best + 1])
    if float(loss_p[0]) <= float(loss[best]):
        return theta_p[0], float(loss_p[0])
    return theta[best], float(loss[best])


def _starts(form: str, y: np.ndarray) -> torch.Tensor:
    """A grid of starting points (log of positive params in scaled units), one per row."""
    top, spread = float(y.max()), float(np.ptp(y)) + 1e-3 * (abs(float(y.max())) + 1e-9)
    rows = []
    for a in (0.05, 0.15, 0.4, 1.0, 2.5, 6.0):
        for head in (0.05, 0.5):
            r0 = max(top + head * spread, 1e-9)
            amp = max(r0 - float(np.median(y)), 1e-9)
            if form == "power":
                rows.append([r0, amp, a])
            else:
                rows += [[r0, amp, a, g, g, 0.3 * amp, a] for g in (0.1, 1.0)]
    return torch.from_numpy(np.log(np.asarray(rows, dtype=np.float64)))


def _residual_scale(d: _Data, theta: torch.Tensor, k: int) -> float:
    """Normal-consistent MAD of the residuals, corrected for the k fitted parameters."""
    with torch.no_grad():
        r = (d.y - _predict_scaled(d.form, theta.exp()[None], d.X)[0]).numpy()
    n = len(r)
    mad = float(stats.median_abs_deviation(r, scale="normal")) * math.sqrt(n / max(n - k, 1))
    floor = 1e-6 * float(np.abs(d.y.numpy()).mean()) + 1e-12
    return max(mad, floor)


@dataclass
class FitResult:
    form: str
    params: dict  # original units
    r2: float
    loss: float
    n_points: int
    ci: dict = field(default_factory=dict)  # name -> (lo, hi), bootstrap percentile, identified params only
    x_ref: float = 1.0
    n_boot: int = 0
    scale: float = math.nan  # residual scale s (metric units); the Huber threshold is delta * s
    delta: float = HUBER_DELTA
    profile: dict = field(default_factory=dict)  # name -> (lo, hi) profile interval (A, B: at x_ref)
    not_identified: dict = field(default_factory=dict)  # name -> reason
    ci_level: float = 0.95

    @property
    def identified(self) -> bool:
        return not self.not_identified

    def predict(self, n_rs, n_llm=None, n_qt=None) -> np.ndarray:
        p = torch.tensor([[self.params[k] for k in FORMS[self.form]]], dtype=torch.float64)
        return _predict_scaled(self.form, p, torch.from_numpy(_stack(self.form, n_rs, n_llm, n_qt)))[0].numpy()

    def summary(self) -> str:
        parts = []
        for k, v in self.params.items():
            if k in self.not_identified:
                parts.append(f"{k}={v:.4g} (not identified: {self.not_identified[k]})")
            else:
                parts.append(f"{k}={v:.4g}" + (" [{:.3g}, {:.3g}]".format(*self.ci[k]) if k in self.ci else ""))
        law = "R0 - A/N^a" if self.form == "power" else "R0 - A/(N_RS+g1*N_LLM+g2*N_QT)^a - B/N_RS^b"
        head = f"{law}: " if self.identified else f"{law} NOT IDENTIFIED: "
        return head + ", ".join(parts) + f"; R^2={self.r2:.4f} over {self.n_points} points"

    def to_dict(self) -> dict:
        return {"form": self.form, "identified": self.identified, "params": self.params,
                "not_identified": self.not_identified, "r2": self.r2, "loss": self.loss,
                "n_points": self.n_points, "ci_level": self.ci_level,
                "ci": {k: list(v) for k, v in self.ci.items()}, "n_boot": self.n_boot,
                "profile": {k: list(v) for k, v in self.profile.items()},
                "residual_scale": self.scale, "huber_threshold": self.delta * self.scale, "x_ref": self.x_ref}


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


def _profile_grid(d: _Data, theta: torch.Tensor) -> torch.Tensor:
    """[k, 2G] log-values per parameter: G below the fit (nearest first), then G above."""
    lo, hi = _bounds(d.form)
    offs = torch.from_numpy(np.geomspace(1e-4, LOG_SPAN, N_PROFILE))
    below = (theta[:, None] - offs[None]).clamp(min=lo[:, None])
    above = (theta[:, None] + offs[None]).clamp(max=hi[:, None])
    return torch.cat([below, above], 1)


def _profile_losses(d: _Data, theta: torch.Tensor, starts: torch.Tensor):
    """Refit with each parameter fixed on its grid: (grid [k, 2G], best loss [k, 2G], its theta [k, 2G, k])."""
    k = theta.numel()
    grid = _profile_grid(d, theta)
    init = torch.cat([theta[None], starts[::max(1, len(starts) // 6)]])  # the fit and 6 grid starts: [S, k]
    S, P = len(init), grid.shape[1]
    th0 = init[None, None].repeat(k, P, 1, 1)  # [k, P, S, k]
    fixed = torch.zeros_like(th0, dtype=torch.bool)
    for j in range(k):
        th0[j, :, :, j] = grid[j][:, None]
        fixed[j, :, :, j] = True
    th, loss = _minimise(d, th0.reshape(-1, k), fixed=fixed.reshape(-1, k))
    loss = loss.reshape(k, P, S)
    best = loss.argmin(2)
    th = th.reshape(k, P, S, k).gather(2, best[..., None, None].expand(k, P, 1, k))[:, :, 0]
    return grid, loss.min(2).values, th


def _side(grid: np.ndarray, rise: np.ndarray, t: float) -> float | None:
    """Log-value where the loss rise crosses t going outward along one side, None if it never does."""
    above = np.flatnonzero(rise > t)
    if len(above) == 0:
        return None
    i = int(above[0])
    if i == 0:
        return float(grid[0])
    r0, r1 = math.sqrt(max(rise[i - 1], 0.0)), math.sqrt(rise[i])  # sqrt of the rise is ~linear in x
    return float(grid[i - 1] + (math.sqrt(t) - r0) / (r1 - r0) * (grid[i] - grid[i - 1]))


def _profile(d: _Data, theta: torch.Tensor, loss: float, starts: torch.Tensor, ci: float):
    """(intervals {name: (lo, hi)}, reasons {name: why not identified}, better theta or None)."""
    names = FORMS[d.form]
    n, k = len(d.y), len(names)
    grid, prof, th = _profile_losses(d, theta, starts)
    i_min = int(torch.argmin(prof.reshape(-1)))
    if float(prof.reshape(-1)[i_min]) < loss - 1e-9 * max(abs(loss), 1.0):
        return {}, {}, th.reshape(-1, k)[i_min]  # the profile found a better fit: refit from there
    t = 0.5 * float(stats.f.ppf(ci, 1, max(n - k, 1)))
    rise = (prof - loss).numpy()
    g = grid.numpy()
    intervals, reasons = {}, {}
    for j, name in enumerate(names):
        key = f"{name}_ref" if name in ("A", "B") else name
        ends, edges = [], []
        for side, half in (("lower", slice(0, N_PROFILE)), ("upper", slice(N_PROFILE, None))):
            x = _side(g[j, half], rise[j, half], t)
            if x is None:
                x = g[j, half][-1]
                edges.append(f"{key}={math.exp(x):.3g} ({side} search edge)")
            ends.append(math.exp(x))
        intervals[key] = tuple(ends)
        if edges:
            reasons[name] = f"profile flat: the loss stays within the {ci:.0%} threshold out to " + " and ".join(edges)
    if n <= k:
        reasons = {name: f"{n} points for {k} parameters: no residual degrees of freedom" for name in names}
    return intervals, reasons, None


def _clean(form: str, y, n_rs, n_llm, n_qt) -> tuple[np.ndarray, np.ndarray]:
    """Finite points with a positive main size, as (y [n], X [n, m]); too few distinct sizes is an error."""
    if form not in FORMS:
        raise ConfigError(f"fit form {form!r}: expected one of {list(FORMS)}")
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    X = _stack(form, n_rs, n_llm, n_qt)
    keep = np.isfinite(y) & np.all(np.isfinite(X), 1) & (X[:, 0] > 0)
    y, X = y[keep], X[keep]
    k, distinct = len(FORMS[form]), len(np.unique(X, axis=0))
    if distinct < k:
        raise ConfigError(f"{form} fit needs at least {k} distinct sizes, got {distinct}")
    return y, X


def fit_law(y, n_rs, n_llm=None, n_qt=None, form: str = "power", delta: float = HUBER_DELTA, n_boot: int = 200,
            ci: float = 0.95, seed: int = 0, max_iter: int = 300) -> FitResult:
    """Fit `form` to points (sizes -> metric y): params, R^2, profile check, bootstrap intervals.

    delta is the Huber threshold in units of the residual scale (MAD of the least-squares residuals).
    n_boot=0 skips the bootstrap. Parameters the data cannot pin are listed in `not_identified`.
    """
    y, X = _clean(form, y, n_rs, n_llm, n_qt)
    k = len(FORMS[form])
    x_ref = float(np.exp(np.log(X[:, 0]).mean()))
    d = _Data(form, torch.from_numpy(X / x_ref), torch.from_numpy(y), max(float(np.abs(y).mean()), 1e-12),
              math.inf, max_iter)
    starts = _starts(form, y)
    theta, _ = _fit_best(d, starts)  # least-squares pilot: sets the first residual scale
    d.delta = delta
    for _ in range(3):  # robust fit, residual scale re-estimated from its residuals
        d.s = _residual_scale(d, theta, k)
        theta, loss = _fit_best(d, torch.cat([starts, theta[None]]))
    for _ in range(3):  # a profile point better than the fit means a local optimum: refit from there
        intervals, reasons, better = _profile(d, theta, loss, starts, ci)
        if better is None:
            break
        theta, loss = _fit_best(d, better[None])
        reasons = {name: "the optimum keeps moving (profile finds better fits)" for name in FORMS[form]}
    pred = _predict_scaled(form, theta.exp()[None], d.X)[0].numpy()
    ss_res, ss_tot = float(((y - pred) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    res = FitResult(form, _to_original(form, theta.exp().numpy(), x_ref), r2, loss, len(y), x_ref=x_ref, scale=d.s,
                    delta=delta, profile=intervals, not_identified=reasons, ci_level=ci)
    if n_boot > 0:
        boot, res.n_boot, at_bound = _bootstrap(d, theta, starts, n_boot, ci, x_ref, seed)
        for name, share in at_bound.items():
            if share > 0.1 and name not in res.not_identified:
                res.not_identified[name] = f"{share:.0%} of bootstrap replicates sit at the search bound"
        res.ci = {name: v for name, v in boot.items() if name not in res.not_identified}
    return res


def _resample(n_boot: int, Xn: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Bootstrap weights [B, n] (counts), keeping replicates with at least k distinct sizes."""
    n = len(Xn)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    w = np.zeros((n_boot, n))
    np.add.at(w, (np.arange(n_boot)[:, None], idx), 1.0)
    inv = np.unique(Xn, axis=0, return_inverse=True)[1].reshape(-1)
    distinct = np.array([len(np.unique(inv[row > 0])) for row in w])
    return w[distinct >= k]


def _bootstrap(d: _Data, theta: torch.Tensor, starts: torch.Tensor, n_boot: int, ci: float, x_ref: float,
               seed: int):
    """Percentile intervals {name: (lo, hi)}, replicates used, {exponent: share of replicates at a bound}."""
    names = FORMS[d.form]
    w = _resample(n_boot, d.X.numpy(), len(names), seed)
    if len(w) == 0:
        return {}, 0, {}
    init = torch.cat([theta[None], starts])  # every replicate starts from the fit and from the grid
    B, S, k = len(w), len(init), len(names)
    wt = torch.from_numpy(w).repeat_interleave(S, 0)
    th, loss = _minimise(d, init.repeat(B, 1), wt)
    loss = loss.reshape(B, S)
    th = th.reshape(B, S, k)[torch.arange(B), loss.argmin(1)][torch.isfinite(loss.min(1).values)]
    if len(th) == 0:
        return {}, 0, {}
    P = np.array([list(_to_original(d.form, p, x_ref).values()) for p in th.exp().numpy()])
    lo_b, hi_b = (b.numpy() for b in _bounds(d.form))
    at_bound = {n: float(np.mean((th[:, j].numpy() <= lo_b[j] + 1e-3) | (th[:, j].numpy() >= hi_b[j] - 1e-3)))
                for j, n in enumerate(names) if n in EXPONENTS}
    lo, hi = np.percentile(P, 50 * (1 - ci), axis=0), np.percentile(P, 50 * (1 + ci), axis=0)
    return {n: (float(lo[i]), float(hi[i])) for i, n in enumerate(names)}, int(len(P)), at_bound


def fit_power_law(n, y, **kw) -> FitResult:
    """R = R0 - A / N**a over one axis."""
    return fit_law(y, n, form="power", **kw)


def fit_joint(y, n_rs, n_llm, n_qt, **kw) -> FitResult:
    """R = R0 - A/(N_RS + g1*N_LLM + g2*N_QT)**a - B/N_RS**b (arXiv 2509.25522)."""
    return fit_law(y, n_rs, n_llm, n_qt, form="joint", **kw)
