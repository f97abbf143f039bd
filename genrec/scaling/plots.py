"""`genrec plot FILE`: metric-vs-size curves per family and axis, with fitted power laws, to PNG.

`<stem>.png` holds one panel per (family, varying axis); x is params_non_embedding for size ladders
(layers x width) or the axis value, on a log scale (ticks at the measured sizes, written 30k / 1.8M)
where the values span a factor of 4 or more. A line joins only points that differ on the plotted axis
(two LLMs are two markers, not one line); mean +- std over seeds. Each panel title names the dataset,
split protocol and seed count, and a legend names every colour. The saturating power law R0 - A/N^a
is drawn where a line has >= 4 sizes *and* the fit pins every parameter; a fit that is not identified
gets a note on the panel instead of a curve. All fits, identified or not, go to `<stem>_fits.json`.
With several panels each also gets its own `<stem>_<family>_<axis>.png`. A file where no axis varies
(the quickstart) gets a bar chart of the metric per configuration instead.

`genrec plot FILE --x flops` draws the metric against training compute instead (`train_flops`, genrec.compute;
log x) in `<stem>_flops.png`: one line per family and configuration line (configurations that differ only
in numeric sizes are one line), every family in one panel, and the compute frontier (`compute_frontier`): the best
metric reached at or below each compute budget, a step line over all families. Configurations without
training (baselines, 0 FLOPs) are horizontal reference lines; rows without a `train_flops` value (written
before compute accounting) are left out and counted in the summary.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from genrec.errors import ConfigError
from genrec.scaling.curves import (CONTEXT_COLS, X_PARAMS, axis_cols, curves, describe, group_rows, num, ok_rows,
                                   numeric_axes, panels, size_axes)
from genrec.scaling.leaderboard import read_rows
from genrec.scaling.report import check_metric

FAMILIES = ("baseline", "cf", "sid", "llm")
X_FLOPS = "train_flops"
X_CHOICES = {"params": X_PARAMS, "flops": X_FLOPS}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fmt_size(v: float, _pos=None) -> str:
    """Compact tick label: 28896 -> '28.9k', 1.8e6 -> '1.8M', 0.25 -> '0.25'."""
    if not math.isfinite(v):
        return ""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.3g}"


def _draw_line(ax, c, color: str) -> tuple[bool, str]:
    """Points (mean +- std over seeds) of one curve and its fit; returns (fit drawn, note or '')."""
    ux, m, s = c.means()
    okx = np.isfinite(ux)
    fitted = c.fit is not None and c.fit.identified
    ax.errorbar(ux[okx], m[okx], yerr=s[okx], marker="o", ms=4, capsize=2, color=color,
                ls="none" if fitted else "-", label=c.label)
    if c.fit is None:
        return False, ""
    if not fitted:
        return False, f"{c.label}: power law not identified ({', '.join(c.fit.not_identified)}): no curve drawn"
    grid = np.geomspace(np.nanmin(ux[ux > 0]), np.nanmax(ux), 100)
    p = c.fit.params
    ax.plot(grid, c.fit.predict(grid), color=color, ls="--", lw=1.2, gid="fit",
            label=f"fit: {p['R0']:.3g} - {p['A']:.3g}/N^{p['a']:.2f} (R2={c.fit.r2:.3f})")
    return True, ""


def _draw_categories(ax, cs) -> list[str]:
    """Categories in the order the CSV first shows them (a sweep's own order, e.g. encoders small to large)."""
    cats = list(dict.fromkeys(str(x) for c in cs for x in c.xs))
    for i, c in enumerate(cs):
        pos = np.array([cats.index(str(x)) for x in c.xs])
        means = [c.ys[pos == j].mean() if (pos == j).any() else np.nan for j in range(len(cats))]
        stds = [c.ys[pos == j].std(ddof=1) if (pos == j).sum() > 1 else 0.0 for j in range(len(cats))]
        ax.errorbar(np.arange(len(cats)) + 0.05 * i, means, yerr=stds, marker="o", capsize=2, color=f"C{i % 10}",
                    ls="none", label=c.label)
    return cats


def _log_axis(ax, cs) -> None:
    """Log x where the values span a factor of 4+, ticks at the measured values when there are few."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    xs = np.concatenate([c.xs.astype(float) for c in cs])
    xs = np.unique(xs[np.isfinite(xs) & (xs > 0)])
    if not len(xs) or xs.max() / xs.min() < 4:
        return
    ax.set_xscale("log")
    if len(xs) <= 8:
        ax.set_xticks(xs)
    ax.xaxis.set_major_formatter(FuncFormatter(fmt_size))
    ax.xaxis.set_minor_formatter(NullFormatter())


def draw_panel(ax, fam: str, x_col: str, cs, metric: str, context: str = "") -> dict:
    """Draw one panel; returns {'title', 'fit_curves' (drawn), 'notes' (fits not drawn), 'legend'}."""
    numeric = bool(cs) and cs[0].xs.dtype != object
    n_fit, notes = 0, []
    if numeric:
        for i, c in enumerate(cs):
            drawn, note = _draw_line(ax, c, f"C{i % 10}")
            n_fit += drawn
            notes += [note] if note else []
        _log_axis(ax, cs)
    else:
        cats = _draw_categories(ax, cs)
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels(cats, rotation=20, fontsize=8)
    if notes:
        ax.text(0.02, 0.02, "\n".join(notes), transform=ax.transAxes, fontsize=7, va="bottom", wrap=True,
                bbox={"boxstyle": "round", "fc": "white", "ec": "0.7", "alpha": 0.9})
    ax.set_xlabel("non-embedding parameters" if x_col == X_PARAMS else x_col)
    ax.set_ylabel(f"{metric} (mean +- std over seeds)")
    title = f"{fam}: {metric} vs {'size' if x_col == X_PARAMS else x_col}" + (f"\n{context}" if context else "")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    legend = ax.legend(fontsize=7)
    return {"title": title, "fit_curves": n_fit, "notes": notes, "legend": [t.get_text() for t in legend.texts]}


def _bar_chart(plt, rows: list[dict], metric: str, title: str, path: Path) -> None:
    from matplotlib.patches import Patch

    groups = group_rows(rows)
    groups.sort(key=lambda g: g.mean(metric))
    labels = [f"{g.labels['family']}/{g.labels['model']}" for g in groups]
    fams = [g.labels["family"] for g in groups]
    color = {f: f"C{FAMILIES.index(f)}" if f in FAMILIES else "C7" for f in fams}
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(groups) + 1.8))
    ax.barh(range(len(groups)), [g.mean(metric) for g in groups], color=[color[f] for f in fams],
            xerr=[g.std(metric) if len(g.rows) > 1 else 0.0 for g in groups])
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel(metric)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=[Patch(color=v, label=f) for f, v in color.items()], fontsize=7, title="family")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _save(plt, pans, metric: str, path: Path, cols: int) -> list[dict]:
    """One figure with a panel per (family, axis, rows, curves); returns the panel summaries."""
    rows_n = math.ceil(len(pans) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(6.5 * cols, 4.8 * rows_n), squeeze=False)
    out = [draw_panel(ax, fam, x, cs, metric, describe(fr)) for ax, (fam, x, fr, cs) in zip(axes.ravel(), pans)]
    for ax in axes.ravel()[len(pans):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return out


def plot_file(file: str | Path, out_dir: str | Path = "", metric: str = "recall@10", sweep: str = "",
              n_boot: int = 200, summary: list | None = None, x: str = "params") -> list[str]:
    """Draw the curves of a leaderboard CSV; returns the PNG paths written (fits go to <stem>_fits.json).

    x: "params" (metric vs size per family and axis) or "flops" (metric vs training FLOPs, all families
    in one panel with the compute frontier; see plot_flops).
    summary: a list that receives one dict per panel drawn (title, fit curves drawn, notes, legend; with
    x="flops" also the frontier steps).
    """
    if x not in X_CHOICES:
        raise ConfigError(f"--x: {x!r} is not one of {sorted(X_CHOICES)}")
    file = Path(file)
    if not file.exists():
        raise ConfigError(f"leaderboard file not found: {file}")
    rows = read_rows(file)
    check_metric(rows, metric, file)
    rows = ok_rows(rows, metric, sweep)
    if not rows:
        raise ConfigError(f"{file}: no ok rows with a value for {metric}")
    out = Path(out_dir) if out_dir else file.parent
    out.mkdir(parents=True, exist_ok=True)
    plt, stem = _plt(), file.stem
    if x == "flops":
        return [plot_flops(plt, rows, metric, out / f"{stem}_flops.png", summary)]
    pans = [(fam, x, fr, curves(fr, metric, x, n_boot=n_boot)) for fam, x, fr in panels(rows, metric)]
    if not pans:
        p = out / f"{stem}.png"
        _bar_chart(plt, rows, metric, f"{stem}: {metric} per configuration (mean +- std)\n{describe(rows)}", p)
        return [str(p)]
    paths = [str(out / f"{stem}.png")]
    drawn = _save(plt, pans, metric, out / f"{stem}.png", min(len(pans), 2))
    if len(pans) > 1:
        for pan in pans:
            paths.append(str(out / f"{stem}_{pan[0]}_{pan[1]}.png"))
            _save(plt, [pan], metric, Path(paths[-1]), 1)
    if summary is not None:
        summary.extend(drawn)
    fits = [{"family": fam, "x": x, "line": c.label, "metric": metric, "context": describe(fr), **c.fit.to_dict()}
            for fam, x, fr, cs in pans for c in cs if c.fit is not None]
    if fits:
        (out / f"{stem}_fits.json").write_text(json.dumps(fits, indent=1))
    return paths


# ----------------------------------------------------------------------------- metric vs training compute


def _flops_line(row: dict, ladder: set[str], vary: list[str]) -> str:
    """A row's line in the FLOPs plot: family/model and the varying axes that are not numeric steps."""
    parts = [f"{row.get('family', '')}/{row.get('model', '')}"]
    return " ".join(parts + [f"{c}={row.get(c, '')}" for c in vary if c not in ladder])


def flops_configs(rows: list[dict], metric: str) -> list[dict]:
    """One dict per configuration (mean over seeds) with a training-FLOPs value: line, family, model, point,
    flops, value, std. Within a family, configurations that differ only in numeric sizes or values (a layer x
    width ladder, cf_dim) are one line; a categorical axis (encoder, an LLM's name) splits lines."""
    out = []
    for fam in sorted({r.get("family", "") for r in rows}):
        fr = [r for r in rows if r.get("family", "") == fam]
        vary = [c for c in axis_cols() + CONTEXT_COLS
                if c not in ("family", "model") and len({r.get(c, "") for r in fr}) > 1]
        ladder = {c for c in size_axes() | numeric_axes()
                  if all(math.isfinite(num(r.get(c))) for r in fr if r.get(c, "") != "")}
        for g in group_rows(fr):
            r0 = g.rows[0]
            out.append({"line": _flops_line(r0, ladder, vary), "family": fam, "model": r0.get("model", ""),
                        "point": r0.get("point", ""), "flops": g.mean(X_FLOPS), "value": g.mean(metric),
                        "std": g.std(metric) if len(g.rows) > 1 else 0.0})
    return out


def compute_frontier(rows: list[dict], metric: str) -> list[dict]:
    """The compute frontier of leaderboard rows: the best `metric` (mean over seeds of a configuration)
    reached at or below each training-compute budget. Returns its steps in order of compute, one per
    configuration that beats every cheaper one: {flops, value, family, model, point, line}. Rows without
    a finite train_flops are left out; 0 FLOPs (no training) is a budget like any other."""
    configs = [c for c in flops_configs(rows, metric) if math.isfinite(c["flops"]) and c["flops"] >= 0
               and math.isfinite(c["value"])]
    configs.sort(key=lambda c: (c["flops"], -c["value"]))
    steps, best = [], -math.inf
    for c in configs:
        if c["value"] > best:
            best = c["value"]
            steps.append({k: c[k] for k in ("flops", "value", "family", "model", "point", "line")})
    return steps


def _draw_frontier(ax, steps: list[dict], left: float, right: float) -> None:
    xs = [max(s["flops"], left) for s in steps] + [right]
    ys = [s["value"] for s in steps] + [steps[-1]["value"]]
    ax.step(xs, ys, where="post", color="k", lw=2.2, alpha=0.35, zorder=1, label="frontier (best at <= budget)")
    for s, x in zip(steps, xs):
        ax.annotate(s["family"], (x, s["value"]), textcoords="offset points", xytext=(3, 4), fontsize=7)


def plot_flops(plt, rows: list[dict], metric: str, path: Path, summary: list | None = None) -> str:
    """Metric vs training FLOPs (log x), one line per family/configuration line, and the frontier."""
    configs = [c for c in flops_configs(rows, metric) if math.isfinite(c["flops"]) and math.isfinite(c["value"])]
    if not configs:
        raise ConfigError(f"no ok rows with both {metric} and {X_FLOPS} (rows written before compute "
                          f"accounting have no train_flops: rerun them)")
    trained = [c for c in configs if c["flops"] > 0]
    lo = min((c["flops"] for c in trained), default=1.0)
    hi = max((c["flops"] for c in trained), default=10.0)
    fig, ax = plt.subplots(figsize=(8, 5.2))
    lines: dict[str, list[dict]] = {}
    for c in trained:
        lines.setdefault(c["line"], []).append(c)
    for i, (label, cs) in enumerate(sorted(lines.items())):
        cs.sort(key=lambda c: c["flops"])
        ax.errorbar([c["flops"] for c in cs], [c["value"] for c in cs], yerr=[c["std"] for c in cs], marker="o",
                    ms=4, capsize=2, color=f"C{i % 10}", label=label)
    for c in configs:
        if c["flops"] == 0:
            ax.axhline(c["value"], color="0.5", ls=":", lw=1, label=f"{c['line']} (no training)")
    steps = compute_frontier(rows, metric)
    _draw_frontier(ax, steps, lo / 2, hi * 2)
    ax.set_xscale("log")
    ax.set_xlim(lo / 2, hi * 2)
    ax.set_xlabel("training compute (FLOPs, analytic: genrec.compute)")
    ax.set_ylabel(f"{metric} (mean +- std over seeds)")
    title = f"{metric} vs training compute\n{describe(rows)}"
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    legend = ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    if summary is not None:
        summary.append({"title": title, "legend": [t.get_text() for t in legend.texts], "frontier": steps,
                        "left_out": len(rows) - sum(math.isfinite(num(r.get(X_FLOPS))) for r in rows)})
    return str(path)
