"""`genrec compare FILE --a GLOB --b GLOB`: two configurations of a leaderboard compared user by user.

Each side is the ok rows whose `point` matches the glob (e.g. 'smollm2-cf-r8-*': all its seeds). Every run
saved its per-user ranks (<run folder>/user_ranks_<run id>.npz, genrec.pipeline.write_user_ranks); a side's
per-user metric is the mean over its seeds, on the users every one of its runs evaluated. On the users both
sides share, the difference a - b gets a 95% percentile bootstrap interval over users (paired: the same
users resampled for both sides), which is much tighter than comparing two unpaired means when most users
are easy or hard for every model. Seed-to-seed spread is not in this interval: `genrec leaderboard --vs`
gives the Welch interval over seeds.

`--c GLOB --d GLOB` compares two differences the same way: (a - b) - (c - d) on the users all four share, e.g.
whether CF injection helps a small LLM more than a large one (a, b: small with and without CF; c, d: large).

Rank files are looked for in the row's run folder (extra.run_dir) and in each --ranks folder (flat:
user_ranks_<run id>.npz, as benchmarks/results/user_ranks/ keeps them for committed rows).
"""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import numpy as np

from genrec.errors import DataError
from genrec.eval.metrics import MISS, bootstrap_intervals, metrics_from_gt
from genrec.scaling.leaderboard import read_rows


def rank_file(row: dict, dirs: list[str | Path]) -> Path | None:
    name = f"user_ranks_{row['run_id']}.npz"
    extra = json.loads(row.get("extra") or "{}")
    places = ([Path(extra["run_dir"])] if extra.get("run_dir") else []) + [Path(d) for d in dirs]
    return next((p / name for p in places if (p / name).is_file()), None)


def side_metric(rows: list[dict], metric: str, dirs: list[str | Path], label: str) -> tuple[np.ndarray, np.ndarray]:
    """(users, per-user metric averaged over the rows' runs) on the users every run evaluated."""
    k = int(metric.split("@")[1])
    per_run = []
    for r in rows:
        path = rank_file(r, dirs)
        if path is None:
            raise DataError(f"{label}: no per-user ranks for run {r['run_id']} (point {r['point']}): looked for "
                            f"user_ranks_{r['run_id']}.npz in its run folder and in --ranks {dirs or '(none)'}")
        z = np.load(path)
        vals = metrics_from_gt(np.minimum(z["greater"], MISS), z["ties"], [k])[metric]
        per_run.append(dict(zip(z["users"].tolist(), vals.tolist())))
    common = sorted(set.intersection(*(set(d) for d in per_run)))
    return np.asarray(common, dtype=np.int64), np.array([[d[u] for u in common] for d in per_run]).mean(0)


def paired_difference(file: str | Path, a: str, b: str, metric: str = "recall@10",
                      dirs: list[str | Path] = (), n_boot: int = 2000, c: str | None = None,
                      d: str | None = None) -> dict:
    """The paired comparison of the rows matching glob a against those matching glob b (see the module doc).

    With c and d too: the difference of differences (a - b) - (c - d) on the users all four sides share, e.g.
    "does CF injection help the small LLM more than the large one" with a/b = small LLM with/without CF and
    c/d = large LLM with/without CF. "diff" and "ci95" are then that contrast; "diff_ab" and "diff_cd" its parts.
    """
    if "@" not in metric or metric.split("@")[0] not in ("recall", "ndcg", "mrr"):
        raise DataError(f"--metric {metric}: expected recall@K, ndcg@K or mrr@K")
    if (c is None) != (d is None):
        raise DataError("--c and --d go together: the contrast is (a - b) - (c - d)")
    if not Path(file).is_file():
        raise DataError(f"leaderboard file not found: {file}")
    rows = [r for r in read_rows(file) if r.get("status") == "ok"]
    globs = {"a": a, "b": b, **({"c": c, "d": d} if c is not None else {})}
    sides = {}
    for label, glob in globs.items():
        sel = [r for r in rows if fnmatch.fnmatchcase(r.get("point", ""), glob)]
        if not sel:
            raise DataError(f"{file}: no ok row has a point matching --{label} {glob!r}")
        sides[label] = (sel, *side_metric(sel, metric, list(dirs), f"--{label} {glob}"))
    common = sides["a"][1]
    for _, users, _ in sides.values():
        common = np.intersect1d(common, users)
    if len(common) == 0:
        raise DataError(f"--{' / --'.join(globs)} ({', '.join(globs.values())}) share no evaluated user: evaluate "
                        f"them on the same users (eval.max_users with eval.sample_seed)")
    vals = {k: v[np.searchsorted(u, common)] for k, (_, u, v) in sides.items()}
    contrast = vals["a"] - vals["b"]
    out = {"metric": metric, "users": int(len(common))}
    if c is not None:
        out["diff_ab"] = float(contrast.mean())
        out["diff_cd"] = float((vals["c"] - vals["d"]).mean())
        contrast = contrast - (vals["c"] - vals["d"])
    lo, hi = bootstrap_intervals({metric: contrast}, n_boot=n_boot)[metric]
    for k, glob in globs.items():
        out.update({k: glob, f"runs_{k}": len(sides[k][0]), f"mean_{k}": float(vals[k].mean())})
    out.update({"diff": float(contrast.mean()), "ci95": [lo, hi], "a_wins": int((contrast > 0).sum()),
                "b_wins": int((contrast < 0).sum())})
    return out


def print_compare(file, a: str, b: str, metric: str = "recall@10", dirs: list[str | Path] = (),
                  c: str | None = None, d: str | None = None) -> dict:
    r = paired_difference(file, a, b, metric, dirs, c=c, d=d)
    lo, hi = r["ci95"]
    mark = "  (covers 0)" if lo <= 0 <= hi else ""
    sides = "  ".join(f"{k}={r[f'mean_{k}']:.4f} ({r[f'runs_{k}']} run(s) of {r[k]})" for k in "abcd" if k in r)
    print(f"{metric} on {r['users']} shared users: {sides}")
    if c is None:
        print(f"  a - b = {r['diff']:+.4f}  95% paired bootstrap over users [{lo:+.4f}, {hi:+.4f}]{mark}; "
              f"users better under a: {r['a_wins']}, under b: {r['b_wins']}")
    else:
        print(f"  a - b = {r['diff_ab']:+.4f}, c - d = {r['diff_cd']:+.4f}; (a - b) - (c - d) = {r['diff']:+.4f}  "
              f"95% paired bootstrap over users [{lo:+.4f}, {hi:+.4f}]{mark}")
    return r
