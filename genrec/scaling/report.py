"""`genrec leaderboard FILE`: ranked table, mean +- std over seeds, one line per configuration.

A configuration seen with one seed shows its value and n=1 (no "+- 0"). `--group` may only merge rows
that are the same configuration (seeds): grouping columns that leave different configurations in one
group are refused, naming the columns that differ. A CSV without ranking metrics is refused in one line.

`--vs COLUMN=VALUE` adds each configuration's difference to its reference: the configuration with
COLUMN=VALUE and every other label the same (so `--vs inject=none` compares each injection arm with
"none" at the same recommender size), with a Welch 95% interval over seeds (needs >= 2 seeds on both
sides); "~0" marks an interval that covers zero. `--show` adds more columns, averaged over seeds
(e.g. the tokenizer's collision_rate).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from genrec.errors import ConfigError, DataError
from genrec.scaling.curves import (CONTEXT_COLS, X_PARAMS, axis_cols, config_key, curves, group_rows, num,
                                   ok_rows, panels)
from genrec.scaling.leaderboard import METRIC_COLS, read_rows

SHOW_ALSO = ["recall@10", "ndcg@10"]
MAX_AXIS_COLS = 5  # more varying axis columns than this are folded into one "axes" column


def _fmt_num(v: float, digits: int = 4) -> str:
    return "-" if not math.isfinite(v) else f"{v:.{digits}f}"


def _fmt_mean(t: dict) -> str:
    """'0.1234 +- 0.0012' over several seeds; the bare value for one seed (n=1 says why)."""
    return _fmt_num(t["mean"]) if t["n"] < 2 else f"{_fmt_num(t['mean'])} +- {_fmt_num(t['std'])}"


def _fmt_params(v: float) -> str:
    if not math.isfinite(v):
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v:.0f}"


class NoMetricsError(DataError):
    """The CSV holds no ranking metric (recall@K, ndcg@K, mrr@K): it is not a leaderboard."""


def check_metric(rows: list[dict], metric: str, file) -> None:
    if not rows:
        raise NoMetricsError(f"{file}: no rows")
    known = [c for c in rows[0] if c in METRIC_COLS]
    if not known:
        cols = ", ".join(list(rows[0])[:8])
        raise NoMetricsError(f"{file} has no ranking metrics (recall@K, ndcg@K, mrr@K): not a leaderboard "
                             f"(columns: {cols}{', ...' if len(rows[0]) > 8 else ''})")
    if metric not in rows[0]:
        raise ConfigError(f"--metric {metric!r}: no such column in {file} (metrics: {', '.join(known)})")


def _check_pooling(groups, gcols: list[str]) -> None:
    """Refuse a --group that would treat different configurations as seeds of one."""
    cols = [c for c in CONTEXT_COLS + axis_cols() if any(len({r.get(c, "") for r in g.rows}) > 1 for g in groups)]
    if not cols and any(len({config_key(r) for r in g.rows}) > 1 for g in groups):
        cols = ["the resolved config (settings outside the axis columns)"]
    if cols:
        raise ConfigError(f"--group {','.join(gcols)} would pool different configurations as seeds (they differ in "
                          f"{', '.join(cols)}); add those columns to --group or leave --group out")


def welch_interval(a: dict, b: dict, level: float = 0.95) -> tuple[float, float, float]:
    """(mean difference a - b, lower, upper) from {'mean', 'std', 'n'} of two groups of seeds (Welch's t);
    the bounds are NaN when either side has fewer than 2 seeds."""
    from scipy import stats

    diff = a["mean"] - b["mean"]
    if a["n"] < 2 or b["n"] < 2:
        return diff, math.nan, math.nan
    va, vb = a["std"] ** 2 / a["n"], b["std"] ** 2 / b["n"]
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va ** 2 / (a["n"] - 1) + vb ** 2 / (b["n"] - 1))
    h = stats.t.ppf(0.5 + level / 2, df) * se
    return diff, diff - h, diff + h


def _add_vs(table: list[dict], label_cols: list[str], vs: str, file) -> None:
    """Give each row 'vs' = (diff, lo, hi) against its reference row, "ref" for a reference itself, None
    where no reference has the same other labels (see the module docstring)."""
    key, sep, val = vs.partition("=")
    if not sep or key not in label_cols:
        raise ConfigError(f"--vs {vs!r}: expected COLUMN=VALUE with COLUMN one of the table's label columns "
                          f"({', '.join(label_cols) or 'none: the file has one configuration'})")
    if not any(str(t[key]) == val for t in table):
        raise ConfigError(f"--vs {vs!r}: no configuration in {file} has {key}={val} "
                          f"(values: {', '.join(sorted({str(t[key]) for t in table}))})")
    others = [c for c in label_cols if c != key]
    refs = {tuple(str(t[c]) for c in others): t for t in table if str(t[key]) == val}
    for t in table:
        ref = refs.get(tuple(str(t[c]) for c in others))
        t["vs"] = "ref" if ref is t else None if ref is None else welch_interval(t, ref)


def split_rows(rows: list[dict], split: str) -> tuple[list[dict], str]:
    """The rows ranked under --split: "test", "valid" or "all"; "" = the test rows when there are any (a
    table never ranks validation figures, e.g. a sweep's tuning runs, among test figures by default).
    Returns (rows, a note on what was left out, or "")."""
    if split not in ("", "test", "valid", "all"):
        raise ConfigError(f"--split {split!r}: expected test, valid or all")
    if split == "all":
        return rows, ""
    want = split or ("test" if any(r.get("eval_split") == "test" for r in rows) else "")
    if not want:
        return rows, ""
    kept = [r for r in rows if r.get("eval_split", "test") == want]
    other = sorted({r.get("eval_split", "") for r in rows} - {want})
    n = len(rows) - len(kept)
    why = " (a sweep's tuning runs are)" if "valid" in other else ""
    note = (f"left out: {n} ok row(s) evaluated on {', '.join(other)}{why}; --split {other[0]} or --split all "
            f"shows them") if n else ""
    return kept, note


def leaderboard(file: str | Path, metric: str = "ndcg@10", group: str | list[str] = "", sweep: str = "",
                vs: str = "", show: str | list[str] = "", split: str = "") -> dict:
    """Aggregate a leaderboard CSV: {'columns', 'rows' (dicts, best first), 'constant', 'failed', 'note'}.
    split: see split_rows."""
    file = Path(file)
    if not file.exists():
        raise ConfigError(f"leaderboard file not found: {file}")
    rows = read_rows(file)
    check_metric(rows, metric, file)
    gcols = [c.strip() for c in group.split(",") if c.strip()] if isinstance(group, str) else list(group)
    if rows:
        bad = [c for c in gcols if c not in rows[0]]
        if bad:
            raise ConfigError(f"--group {bad[0]!r}: no such column in {file}")
    every = ok_rows(rows, metric, sweep)
    good, note = split_rows(every, split)
    failed = [r for r in rows if r.get("status") == "failed" and (not sweep or r.get("sweep") == sweep)
              and r.get("run_id") not in {g.get("run_id") for g in good}]
    groups = group_rows(good, gcols or None)
    if gcols:
        _check_pooling(groups, gcols)
        label_cols, constant = gcols, {}
    else:
        cand = CONTEXT_COLS + axis_cols()
        label_cols = [c for c in cand if len({g.labels[c] for g in groups}) > 1 or c in ("family", "model")]
        constant = {c: groups[0].labels[c] for c in cand if c not in label_cols and groups and groups[0].labels[c]}
    extra = [m for m in SHOW_ALSO if m != metric]
    more = [c.strip() for c in show.split(",") if c.strip()] if isinstance(show, str) else list(show)
    for c in more:
        if rows and c not in rows[0]:
            raise ConfigError(f"--show {c!r}: no such column in {file}")
    extra += [c for c in more if c not in extra and c != metric]
    shown_axes = [c for c in label_cols if c in axis_cols()[2:]]
    compact = not gcols and len(shown_axes) > MAX_AXIS_COLS  # mixed families: one "axes" column
    table = []
    for g in groups:
        t = {c: g.labels[c] for c in label_cols}
        if compact:
            t["axes"] = " ".join(f"{c}={g.labels[c]}" for c in shown_axes if g.labels[c] not in ("", None))
        t["point"] = re.sub(r"-s\d+$", "", g.rows[0].get("point", ""))  # its sweep point, without the seed
        t["users"] = g.mean("users_evaluated")
        t.update({"params": g.mean(X_PARAMS), "mean": g.mean(metric),
                  "std": g.std(metric) if len(g.rows) > 1 else math.nan, "n": len(g.rows),
                  "seeds": ",".join(g.seeds), "train_time_s": g.mean("train_time_s")})
        for m in extra:
            t[m] = g.mean(m)
        table.append(t)
    table.sort(key=lambda t: -t["mean"] if math.isfinite(t["mean"]) else math.inf)
    if vs:
        _add_vs(table, label_cols, vs, file)
    if compact:
        label_cols = [c for c in label_cols if c not in shown_axes] + ["axes"]
    if len({tuple(str(t[c]) for c in label_cols) for t in table}) < len(table):
        label_cols = label_cols + ["point"]  # configurations that differ outside the label columns: name them
    return {"columns": label_cols, "rows": table, "constant": constant, "failed": failed, "metric": metric,
            "extra": extra, "vs": vs, "rows_ok": len(every), "note": note,
            "cpu_s": sum(x for r in every for x in (num(r.get("train_time_s")), num(r.get("eval_time_s")))
                         if math.isfinite(x))}


def _fmt_vs(v) -> str:
    if v is None:
        return "-"
    if v == "ref":
        return "ref"
    diff, lo, hi = v
    if not math.isfinite(lo):
        return f"{diff:+.4f} (n<2)"
    return f"{diff:+.4f} [{lo:+.4f}, {hi:+.4f}]" + (" ~0" if lo <= 0 <= hi else "")


def print_leaderboard(file: str | Path, metric: str = "ndcg@10", group: str = "", sweep: str = "", vs: str = "",
                      show: str = "", split: str = "") -> list[dict]:
    """Print the ranked table; returns its rows (dicts, best first)."""
    lb = leaderboard(file, metric, group, sweep, vs, show, split)
    cols, extra = lb["columns"], lb["extra"]
    tail = ["axes"] if "axes" in cols else []  # free text last, so the numbers stay aligned
    cols = [c for c in cols if c not in tail]
    vs_head = [f"diff vs {vs} [95% CI]"] if vs else []
    head = ["#", *cols, "params_ne", "users", f"{metric} (mean +- std)", "n", *vs_head, *extra, "train_s", *tail]
    lines = []
    for i, t in enumerate(lb["rows"], 1):
        lines.append([str(i), *(str(t[c]) for c in cols), _fmt_params(t["params"]), _fmt_num(t["users"], 0),
                      _fmt_mean(t), str(t["n"]), *([_fmt_vs(t["vs"])] if vs else []),
                      *(_fmt_num(t[m]) for m in extra), _fmt_num(t["train_time_s"], 1), *(t[c] for c in tail)])
    widths = [max(len(h), *(len(r[j]) for r in lines)) if lines else len(h) for j, h in enumerate(head)]
    title = f"{Path(file).name}" + (f" [sweep {sweep}]" if sweep else "") + f": {len(lb['rows'])} configurations"
    if lb["constant"]:
        title += "  (" + ", ".join(f"{k}={v}" for k, v in lb["constant"].items()) + ")"
    print(title)
    print(f"compute: {lb['rows_ok']} ok rows, {lb['cpu_s'] / 3600:.2f} h of training + evaluation in all "
          f"(sum of train_time_s + eval_time_s)")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    for r in lines:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if lb["note"]:
        print(lb["note"])
    if lb["failed"]:
        names = sorted({r.get("point") or r.get("run_id") for r in lb["failed"]})
        print(f"failed: {len(lb['failed'])} row(s): " + ", ".join(names[:10]) + (" ..." if len(names) > 10 else ""))
    return lb["rows"]


def fit_summaries(file: str | Path, metric: str = "recall@10", sweep: str = "", n_boot: int = 200) -> list[dict]:
    """Power-law fits of every curve with enough sizes: [{family, x, line, fit (FitResult)}]."""
    rows = ok_rows(read_rows(file), metric, sweep)
    out = []
    for fam, x_col, fr in panels(rows, metric):
        for c in curves(fr, metric, x_col, n_boot=n_boot):
            if c.fit is not None:
                out.append({"family": fam, "x": x_col, "line": c.label, "fit": c.fit})
    return out


def print_fits(file: str | Path, metric: str = "recall@10", sweep: str = "", n_boot: int = 200) -> list[dict]:
    fits = fit_summaries(file, metric, sweep, n_boot)
    for f in fits:
        print(f"fit {f['family']} {f['line']} ({metric} vs {f['x']}): {f['fit'].summary()}")
    return fits
