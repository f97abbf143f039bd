"""One verdict line per scaling curve of a leaderboard: does the metric keep paying off along the axis?

For every curve of a numeric axis (non-embedding parameters, cf_dim, data fraction, ...; genrec.scaling.curves),
the seed means at each size are labelled by genrec.eval.spectrum.classify_curve with its Student-t noise
test (two means differ only beyond the 95% interval of their difference and beyond 3% of the curve's best):

  keeps improving   "logarithmic": the upper half of the sizes still adds >= 25% of the total gain;
  saturates         "saturating": the upper half of the sizes adds little (a plateau, or a late decline within
                    noise);
  declines          "collapse": the largest size is below the best beyond noise;
  double peak       "double-peak": a rise, a dip beyond noise, a second rise;
  flat              no two sizes differ beyond noise.
A curve whose best is at its largest size but not beyond noise above its smallest is "not resolved".

A curve gets no verdict with fewer than 3 sizes, or fewer than 3 seeds at some size (the t test needs them).
The power-law fits (genrec.scaling.fit) are printed beside these lines by `genrec sweep` (and written by
`genrec plot`); the verdict does not fit again. `genrec sweep` prints these lines after the leaderboard;
`genrec plot` too.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from genrec.scaling.curves import X_PARAMS, curves, ok_rows, panels
from genrec.scaling.leaderboard import read_rows
from genrec.scaling.report import split_rows

MIN_SEEDS = 3
TOL = 0.03  # differences below 3% of the curve's best never count (classify_curve's tol)


def _size(x: float, x_col: str) -> str:
    if x_col != X_PARAMS:
        return f"{x:g}"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def curve_verdict(c, grid_max: float | None = None) -> dict:
    """{family, x, line, label (None when not resolved), verdict (a sentence), best_x, sizes, min_seeds}.
    grid_max: the largest size other lines of the panel reach on a grid axis (not params); a line that stops
    below it is unfinished and gets no verdict."""
    from genrec.eval.spectrum import classify_curve, mean_above

    ok = np.array([isinstance(x, (int, float)) and math.isfinite(x) for x in c.xs]) & np.isfinite(c.ys)
    xs, ys = c.xs[ok].astype(float), c.ys[ok]
    ux = np.unique(xs)
    seeds = [int((xs == x).sum()) for x in ux]
    means = np.array([ys[xs == x].mean() for x in ux])
    out = {"family": c.family, "x": c.x_col, "line": c.label, "label": None, "sizes": len(ux),
           "min_seeds": min(seeds) if seeds else 0, "best_x": float(ux[int(np.argmax(means))]) if len(ux) else None}
    if grid_max is not None and len(ux) and ux[-1] < grid_max:
        out["verdict"] = f"not resolved: unfinished (largest size {ux[-1]:g}; other lines reach {grid_max:g})"
        return out
    if len(ux) < 3:
        out["verdict"] = f"not resolved: {len(ux)} size(s), a verdict needs 3"
        return out
    if min(seeds) < MIN_SEEDS:
        out["verdict"] = f"not resolved: {min(seeds)} seed(s) at some size, a verdict needs {MIN_SEEDS}"
        return out
    sem = np.array([ys[xs == x].std(ddof=1) / math.sqrt(n) for x, n in zip(ux, seeds)])

    def beyond(i: int, j: int) -> bool:  # mean i above mean j beyond noise (classify_curve's comparison)
        return mean_above(means, sem, seeds, i, j, TOL)

    if not beyond(int(np.argmax(means)), int(np.argmin(means))):
        out.update(label="flat", verdict="flat: no size differs from another beyond noise")
        return out
    label = classify_curve(ux, means, tol=TOL, sem=sem, n_seeds=seeds)
    if label == "logarithmic" and not beyond(len(ux) - 1, 0):
        out["verdict"] = "not resolved: highest at the largest size, but not beyond noise above the smallest"
        return out
    best, last = _size(out["best_x"], c.x_col), _size(ux[-1], c.x_col)
    text = {"logarithmic": f"keeps improving up to the largest size ({last})",
            "saturating": f"saturates: the upper half of the sizes adds little (best mean at {best}, largest size {last})",
            "collapse": f"declines: best mean at {best}, the largest size ({last}) below it beyond noise",
            "double-peak": "double peak: a rise, a dip beyond noise and a second rise"}[label]
    out.update(label=label, verdict=text)
    return out


def verdicts(file: str | Path, metric: str = "recall@10", sweep: str = "") -> list[dict]:
    """curve_verdict of every curve along a numeric axis, over the rows the leaderboard ranks (the test rows)."""
    rows, _ = split_rows(ok_rows(read_rows(file), metric, sweep), "")
    out = []
    for fam, x_col, fr in panels(rows, metric):
        # a categorical axis (encoder, quantizer) has no size to scale along; one size is not a curve
        cs = [c for c in curves(fr, metric, x_col, fit=False) if c.xs.dtype != object and len(np.unique(c.xs)) > 1]
        top = None if x_col == X_PARAMS or not cs else max(float(np.nanmax(c.xs.astype(float))) for c in cs)
        out += [curve_verdict(c, top) for c in cs]
    return out


def print_verdicts(file: str | Path, metric: str = "recall@10", sweep: str = "") -> list[dict]:
    vs = verdicts(file, metric, sweep)
    for v in vs:
        axis = "non-embedding params" if v["x"] == X_PARAMS else v["x"]
        print(f"verdict {v['family']} {v['line']} ({metric} vs {axis}, {v['sizes']} sizes, >= {v['min_seeds']} "
              f"seeds): {v['verdict']}")
    return vs
