"""`genrec plot FILE`: metric-vs-size curves per family and axis, with fitted power laws, to PNG.

`<stem>.png` holds one panel per (family, varying axis); x is params_non_embedding for size ladders
(layers x width) or the axis value, on a log scale where the values span a factor of 4 or more;
one line per model (and per other varying axis), mean +- std over seeds, the fitted saturating power
law R0 - A/N^a drawn over the points where a line has >= 4 sizes. With several panels each also gets
its own `<stem>_<family>_<axis>.png`. A file where no axis varies (the quickstart) gets a bar chart of
the metric per configuration instead.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from genrec.errors import ConfigError
from genrec.scaling.curves import X_PARAMS, curves, group_rows, ok_rows, panels
from genrec.scaling.leaderboard import read_rows


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw_panel(ax, fam: str, x_col: str, cs, metric: str) -> None:
    numeric = cs and cs[0].xs.dtype != object
    cats: list = []
    if not numeric:
        cats = sorted({str(x) for c in cs for x in c.xs})
    for i, c in enumerate(cs):
        color = f"C{i % 10}"
        if numeric:
            ux, m, s = c.means()
            okx = np.isfinite(ux)
            ax.errorbar(ux[okx], m[okx], yerr=s[okx], marker="o", ms=4, capsize=2, color=color, ls="-" if c.fit
                        is None else "none", label=c.label)
            if c.fit is not None:
                lo, hi = np.nanmin(ux[ux > 0]), np.nanmax(ux)
                grid = np.geomspace(lo, hi, 100)
                p = c.fit.params
                ax.plot(grid, c.fit.predict(grid), color=color, ls="--", lw=1.2,
                        label=f"fit: {p['R0']:.3g} - {p['A']:.3g}/N^{p['a']:.2f} (R2={c.fit.r2:.3f})")
        else:
            pos = np.array([cats.index(str(x)) for x in c.xs])
            means = [c.ys[pos == j].mean() if (pos == j).any() else np.nan for j in range(len(cats))]
            stds = [c.ys[pos == j].std(ddof=1) if (pos == j).sum() > 1 else 0.0 for j in range(len(cats))]
            ax.errorbar(np.arange(len(cats)) + 0.05 * i, means, yerr=stds, marker="o", capsize=2, color=color,
                        ls="none", label=c.label)
    if numeric:
        xs = np.concatenate([c.xs.astype(float) for c in cs])
        xs = xs[np.isfinite(xs) & (xs > 0)]
        if len(xs) and xs.max() / xs.min() >= 4:
            ax.set_xscale("log")
    else:
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels(cats, rotation=20, fontsize=8)
    ax.set_xlabel("non-embedding parameters" if x_col == X_PARAMS else x_col)
    ax.set_ylabel(metric)
    ax.set_title(f"{fam}: {metric} vs {'size' if x_col == X_PARAMS else x_col}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _bar_chart(plt, rows: list[dict], metric: str, title: str, path: Path) -> None:
    groups = group_rows(rows)
    groups.sort(key=lambda g: g.mean(metric))
    labels = [f"{g.labels['family']}/{g.labels['model']}" for g in groups]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(groups) + 1.5))
    ax.barh(range(len(groups)), [g.mean(metric) for g in groups], xerr=[g.std(metric) for g in groups],
            color=[f"C{['baseline', 'cf', 'sid', 'llm'].index(g.labels['family']) % 10}"
                   if g.labels["family"] in ("baseline", "cf", "sid", "llm") else "C7" for g in groups])
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel(metric)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_file(file: str | Path, out_dir: str | Path = "", metric: str = "recall@10", sweep: str = "",
              n_boot: int = 200) -> list[str]:
    """Draw the curves of a leaderboard CSV; returns the PNG paths written (fits go to <stem>_fits.json)."""
    file = Path(file)
    if not file.exists():
        raise ConfigError(f"leaderboard file not found: {file}")
    rows = read_rows(file)
    if rows and metric not in rows[0]:
        raise ConfigError(f"--metric {metric!r}: no such column in {file}")
    rows = ok_rows(rows, metric, sweep)
    if not rows:
        raise ConfigError(f"{file}: no ok rows with a value for {metric}")
    out = Path(out_dir) if out_dir else file.parent
    out.mkdir(parents=True, exist_ok=True)
    plt = _plt()
    stem = file.stem
    pans = [(fam, x, curves(fr, metric, x, n_boot=n_boot)) for fam, x, fr in panels(rows, metric)]
    paths: list[str] = []
    if not pans:
        p = out / f"{stem}.png"
        _bar_chart(plt, rows, metric, f"{stem}: {metric} per configuration (mean +- std over seeds)", p)
        return [str(p)]
    n = len(pans)
    cols = min(n, 2)
    rows_n = math.ceil(n / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(6.5 * cols, 4.5 * rows_n), squeeze=False)
    for ax, (fam, x, cs) in zip(axes.ravel(), pans):
        _draw_panel(ax, fam, x, cs, metric)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    p = out / f"{stem}.png"
    fig.savefig(p, dpi=120)
    plt.close(fig)
    paths.append(str(p))
    if n > 1:
        for fam, x, cs in pans:
            fig, ax = plt.subplots(figsize=(6.5, 4.5))
            _draw_panel(ax, fam, x, cs, metric)
            fig.tight_layout()
            p = out / f"{stem}_{fam}_{x}.png"
            fig.savefig(p, dpi=120)
            plt.close(fig)
            paths.append(str(p))
    fits = [{"family": fam, "x": x, "line": c.label, "metric": metric, **c.fit.to_dict()}
            for fam, x, cs in pans for c in cs if c.fit is not None]
    if fits:
        (out / f"{stem}_fits.json").write_text(json.dumps(fits, indent=1))
    return paths
