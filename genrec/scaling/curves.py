"""Turn leaderboard rows into configurations (mean over seeds) and metric-vs-size curves with fits."""
from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np

# Context columns of a leaderboard row: rows that differ here are never pooled or joined.
CONTEXT_COLS = ["sweep", "dataset", "split_protocol", "eval_split", "exclude_history"]
X_PARAMS = "params_non_embedding"


def sample_std(values) -> float:
    """The sample standard deviation (ddof=1) of one point's seeds, 0.0 with one: the spread every
    genrec table, plot and labels file reports."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def axis_cols() -> list[str]:
    """Axis columns (seed excluded; a configuration is one value of all of them): the shared ones plus
    every registered family's (genrec.family)."""
    from genrec.family import axis_columns

    return ["family", "model", "data_fraction"] + [c for c in axis_columns() if c not in ("family", "model")]


def size_axes() -> set[str]:
    """Axes that move the model size together (a size ladder): plotted against params_non_embedding."""
    from genrec.family import size_axes as registered

    return registered()


def numeric_axes() -> set[str]:
    from genrec.family import numeric_axes as registered

    return {"data_fraction"} | registered()


def num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def config_key(row: dict) -> str:
    """Hash of the row's resolved config without the seed (and without labels/paths)."""
    from genrec.identity import result_settings

    try:
        d = json.loads(row.get("config") or "{}")
    except json.JSONDecodeError:
        return ""
    d = result_settings(d, drop_seed=True)  # the one config identity (genrec.config.NOT_RESULT_KEYS)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10] if d else ""


def ok_rows(rows: list[dict], metric: str = "", sweep: str = "") -> list[dict]:
    """Rows with status ok (the last row per run id), optionally of one sweep and with a finite metric."""
    last: dict[str, dict] = {}
    for i, r in enumerate(rows):
        if r.get("status") != "ok" or (sweep and r.get("sweep") != sweep):
            continue
        if metric and not math.isfinite(num(r.get(metric))):
            continue
        last[r.get("run_id") or f"row{i}"] = r
    return list(last.values())


@dataclass
class Group:
    key: tuple
    labels: dict  # column -> value for the grouping columns
    rows: list[dict] = field(default_factory=list)

    def mean(self, col: str) -> float:
        v = [num(r.get(col)) for r in self.rows]
        v = [x for x in v if math.isfinite(x)]
        return float(np.mean(v)) if v else math.nan

    def std(self, col: str) -> float:
        v = [num(r.get(col)) for r in self.rows]
        v = [x for x in v if math.isfinite(x)]
        return sample_std(v) if v else math.nan

    @property
    def seeds(self) -> list[str]:
        return sorted({r.get("seed", "") for r in self.rows})


def group_rows(rows: list[dict], group: list[str] | None = None) -> list[Group]:
    """Group rows by `group` columns (default: every context/axis column plus the seedless config)."""
    cols = list(group) if group else CONTEXT_COLS + axis_cols() + ["_config"]
    out: dict[tuple, Group] = {}
    for r in rows:
        vals = tuple(config_key(r) if c == "_config" else r.get(c, "") for c in cols)
        if vals not in out:
            out[vals] = Group(vals, dict(zip(cols, vals)))
        out[vals].rows.append(r)
    return list(out.values())


@dataclass
class Curve:
    family: str
    x_col: str
    label: str  # the line: model and the other varying axes
    xs: np.ndarray  # one per row (seeds kept separate)
    ys: np.ndarray
    fit: object = None  # FitResult or None

    def means(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ux = np.unique(self.xs)
        m = np.array([self.ys[self.xs == x].mean() for x in ux])
        s = np.array([sample_std(self.ys[self.xs == x]) for x in ux])
        return ux, m, s


def _varying(rows: list[dict], cols) -> list[str]:
    return [c for c in cols if len({r.get(c, "") for r in rows}) > 1]


def _ladder_cols(rows: list[dict]) -> set[str]:
    """Size axes with numeric values (layers, widths): they move together along params_non_embedding.
    A size axis holding names (an LLM) is not a ladder step: different names are different lines."""
    return {c for c in size_axes() if all(math.isfinite(num(r.get(c))) for r in rows if r.get(c, "") != "")}


def describe(rows: list[dict]) -> str:
    """'dataset ml-1m, protocol loo, 2 seeds': what a plot or table is about (ranges where rows differ)."""
    def vals(col):
        return ",".join(sorted({str(r.get(col, "")) for r in rows if r.get(col, "") != ""})) or "?"

    counts = sorted({len(g.rows) for g in group_rows(rows)}) or [0]
    seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"dataset {vals('dataset')}, protocol {vals('split_protocol')}, {seeds} seed{'s' * (counts[-1] != 1)}"


def panels(rows: list[dict], metric: str) -> list[tuple[str, str, list[dict]]]:
    """(family, x column, rows) for each family and each axis that varies in it."""
    out = []
    for fam in sorted({r.get("family", "") for r in rows}):
        fr = [r for r in rows if r.get("family", "") == fam]
        vary = _varying(fr, axis_cols()[1:])
        mine = []
        if any(c in size_axes() for c in vary) and len({num(r.get(X_PARAMS)) for r in fr}) > 1:
            mine.append((fam, X_PARAMS, fr))
        mine += [(fam, c, fr) for c in vary if c in numeric_axes()]
        if not mine:  # categorical axes only (encoder, quantizer, inject, ...): one panel each
            mine = [(fam, c, fr) for c in vary if c not in size_axes() and c != "model"]
        out += mine
    return out


@functools.lru_cache(maxsize=1)
def _default_settings() -> tuple:
    from genrec.config import Config
    from genrec.identity import flatten_config, result_settings

    return tuple(flatten_config(result_settings(Config(), drop_seed=True)).items())


def _flat_settings(row: dict) -> dict | None:
    """The row's result settings without the seed, flattened to {'section.key': value}; a key the row
    lacks (a field added after it was written) takes today's default, as run ids do. None: no config."""
    from genrec.identity import flatten_config, result_settings

    try:
        d = json.loads(row.get("config") or "")
    except json.JSONDecodeError:
        return None
    return {**dict(_default_settings()), **flatten_config(result_settings(d, drop_seed=True))}


def _varying_settings(flats: list[dict]) -> set[str]:
    keys = set().union(*flats) if flats else set()
    return {k for k in keys if len({f.get(k) for f in flats}) > 1}


def _split_sweeps(label: str, rows: list[dict]) -> dict[str, list[dict]]:
    """A line may hold rows of several sweeps (a point two sweeps share keeps the run id, and the row, of
    the sweep that ran it first). They stay one line only when the sweeps differ in no setting beyond
    those the line itself varies within a sweep (its size ladder); otherwise one line per sweep."""
    by_sweep: dict[str, list[dict]] = {}
    for r in rows:
        by_sweep.setdefault(r.get("sweep", ""), []).append(r)
    if len(by_sweep) < 2:
        return {label: rows}
    flats = [_flat_settings(r) for r in rows]
    if all(f is not None for f in flats):
        per_sweep = {s: [f for f, r in zip(flats, rows) if r.get("sweep", "") == s] for s in by_sweep}
        within = set().union(*(_varying_settings(fs) for fs in per_sweep.values()))
        if _varying_settings(flats) <= within:
            return {label: rows}
    return {f"{label} sweep={s}": rs for s, rs in by_sweep.items()}


def curves(rows: list[dict], metric: str, x_col: str, fit: bool = True, min_points: int = 4,
           n_boot: int = 200) -> list[Curve]:
    """One curve per line of a panel; a saturating power law is fitted where a line has enough sizes."""
    from genrec.scaling.fit import fit_power_law

    skip = {x_col, "family", "sweep"} | (_ladder_cols(rows) if x_col == X_PARAMS else set())
    # a line joins only points that differ on the plotted axis: every other varying column splits lines
    line_cols = [c for c in _varying(rows, axis_cols()) + _varying(rows, CONTEXT_COLS) if c not in skip]
    if "model" not in line_cols:
        line_cols.insert(0, "model")
    lines: dict[str, list[dict]] = {}
    for r in rows:
        label = " ".join(str(r.get(c, "")) if c == "model" else f"{c}={r.get(c, '')}" for c in line_cols)
        lines.setdefault(label, []).append(r)
    lines = {k: v for label, lr in lines.items() for k, v in _split_sweeps(label, lr).items()}
    out = []
    numeric = x_col == X_PARAMS or x_col in numeric_axes()
    for label, lr in lines.items():
        xs = [num(r.get(x_col)) if numeric else r.get(x_col, "") for r in lr]
        ys = np.array([num(r.get(metric)) for r in lr])
        c = Curve(lr[0].get("family", ""), x_col, label, np.array(xs, dtype=float if numeric else object), ys)
        if numeric and fit:
            ok = np.isfinite(c.xs.astype(float)) & (c.xs.astype(float) > 0)
            if len(np.unique(c.xs[ok])) >= min_points:
                try:
                    c.fit = fit_power_law(c.xs[ok].astype(float), ys[ok], n_boot=n_boot)
                except Exception:  # noqa: BLE001 - a curve without a fit is still a curve
                    c.fit = None
        out.append(c)
    return out
