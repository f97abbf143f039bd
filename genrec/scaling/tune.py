"""Tuning on validation inside a sweep, and the convergence rule of a training run.

A sweep file's `tune:` key (genrec.scaling.sweep) names a small grid of settings to choose per point:

    tune: {grid: {train.lr: [1.0e-2, 3.0e-3], cf.reg: [0, 1.0e-4]}, seed: 0, metric: recall@10}

For each point (all its seeds together) the runner (genrec.scaling.runner) first trains every grid
combination with the tune seed and evaluates it on the validation split (`eval.split: valid`); those
rows go to the sweep's CSV with `sweep` = `<name>/tune`. The combination with the best validation
metric is chosen (`pick_best`: ties go to the first in grid order), and the point's seeds then run
with the chosen values on the test split; their rows record `tuned` (the chosen values), `tune_grid`,
`tune_metric` and `tune_value` in `extra`. Finished rows are reused, so a stopped sweep resumes.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import replace

TUNE_SUFFIX = "/tune"


def combos(grid: dict) -> list[dict]:
    """Every combination of a {key: [values]} grid, in grid order (the first key varies slowest)."""
    keys = list(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


def pick_best(scored: list[tuple[dict, float | None]]) -> tuple[dict, float]:
    """The (values, score) with the highest score; ties go to the first in the given (grid) order.

    Missing scores (None, NaN: a failed or unfinished tuning run) are left out; ValueError when no
    combination has a score."""
    best = None
    for values, score in scored:
        if score is None or (isinstance(score, float) and math.isnan(score)):
            continue
        if best is None or score > best[1]:
            best = (values, float(score))
    if best is None:
        raise ValueError("pick_best: no tuning run has a validation score")
    return best


def group_name(point_name: str) -> str:
    """A point's name without its seed suffix: the points of one group share their tuning."""
    return re.sub(r"-s-?\d+$", "", point_name)


def groups(points: list) -> dict[str, list]:
    """{group name: [points]} in first-seen order, for the points that carry a tune spec."""
    out: dict[str, list] = {}
    for p in points:
        if getattr(p, "tune", None):
            out.setdefault(group_name(p.name), []).append(p)
    return out


def value_label(values: dict) -> str:
    from genrec.scaling.sweep import _grid_tags, _value_tag

    tags = _grid_tags(list(values))
    return "-".join(f"{tags[k]}{_value_tag(v)}" for k, v in values.items())


def with_values(cfg, values: dict):
    """A copy of a Config with dotted-key values set (e.g. {'train.lr': 3e-3})."""
    from genrec.config import build_config, deep_merge, to_dict
    from genrec.scaling.sweep import nest

    return build_config(deep_merge(to_dict(cfg), nest(values, "tune")), "tune")


def tuning_points(group: str, point) -> list:
    """The tuning runs of a group (from one of its points): one per grid combination, with the tune
    seed and `eval.split: valid`; each carries extra {tune_of, tune_values}."""
    spec = point.tune
    out = []
    for values in combos(spec["grid"]):
        cfg = with_values(point.cfg, {**values, "run.seed": spec["seed"], "eval.split": "valid"})
        out.append(replace(point, name=f"{group}-tune-{value_label(values)}", cfg=cfg, run_id="", train_id="",
                           axes={**point.axes, **values}, tune=None,
                           extra={"tune_of": group, "tune_values": values}))
    return out


def final_points(points: list, chosen: dict, score: float) -> list:
    """The group's points (test split, their own seeds) with the chosen values and the tuning record."""
    out = []
    for p in points:
        spec = p.tune
        extra = {"tuned": chosen, "tune_grid": spec["grid"], "tune_metric": spec["metric"],
                 "tune_value": round(score, 6)}
        out.append(replace(p, cfg=with_values(p.cfg, chosen), run_id="", train_id="", tune=None,
                           axes={**p.axes, **chosen}, extra={**p.extra, **extra}))
    return out


def scores(rows: list[dict], tune_pts: list, metric: str) -> list[tuple[dict, float | None]]:
    """(values, validation score) per tuning point, from the ok rows of the CSV (None where missing)."""
    import json

    by_id = {r["run_id"]: r for r in rows if r.get("status") == "ok"}
    out = []
    for tp in tune_pts:
        row = by_id.get(tp.run_id)
        val = None
        if row is not None:
            raw = row.get(metric)
            if raw in (None, ""):
                raw = json.loads(row.get("extra") or "{}").get(metric)
            val = None if raw in (None, "") else float(raw)
        out.append((tp.extra["tune_values"], val))
    return out


def converged(best_epoch: int, epochs_run: int, max_epochs: int, frac: float = 0.8) -> bool | None:
    """Whether a training run converged within its budget.

    True when early stopping (or a step cap) ended it before the epoch budget (epochs_run <
    max_epochs), or when its best validation epoch (0-based, so best_epoch + 1 epochs) is at most
    `frac` (80%) of the epochs it ran: the validation metric stopped improving well before the end.
    False when the best epoch is in the last 20% of a run that used its whole budget (it was still
    improving: under-trained). None when there was no validation (best_epoch < 0)."""
    if best_epoch is None or best_epoch < 0 or not epochs_run:
        return None
    if epochs_run < max_epochs:
        return True
    return best_epoch + 1 <= frac * epochs_run


def run_tuned(points: list, out, sweep_name: str, run, bind, max_minutes: float = 0.0) -> dict:
    """Run points with a tune spec: per group, its tuning runs, then its seeds with the chosen values.

    run(points, sweep_name, max_minutes, wait_busy) runs points and appends their rows (returns counts by
    outcome: ok / failed / skipped, and under 'busy' the points another process holds, when wait_busy is
    off); bind(points) gives them run ids. Points without a tune spec run first, as they are. A group with
    a run that another process holds is set aside: before each later group, the set-aside groups are
    looked at again without waiting, and one whose held runs are finished (or free) is taken up there; once
    no new group is left, the held runs are waited for. So processes sharing a sweep spread over its
    groups instead of queueing behind one, and a group's seeds follow soon after its tuning. A group none
    of whose tuning runs has an ok row is left for the next attempt (its points count as failed, without
    rows); the time cap stops between runs, as in run_points. Returns the counts over all runs.
    """
    import time

    from genrec.scaling.leaderboard import read_rows

    counts = {"ok": 0, "failed": 0, "skipped": 0}
    t0 = time.perf_counter()
    stop = object()

    def left() -> float | None:  # minutes left under the cap (0 = no cap); None when spent
        if not max_minutes:
            return 0.0
        rest = max_minutes - (time.perf_counter() - t0) / 60
        return rest if rest > 0 else None

    def add(c: dict) -> list:  # adds the finished outcomes; returns the busy points
        for k, v in c.items():
            if k != "busy":
                counts[k] = counts.get(k, 0) + v
        return c.get("busy", [])

    def advance(group: str, members: list, stage: str, held: list | None, wait: bool):
        """Takes a group on from `stage` ('tune' or 'final'; only the `held` runs of it when given). Returns
        None when the group is through (or failed), (stage, busy runs) when another process holds some,
        or `stop` when the time cap ended it."""
        spec = members[0].tune
        tune_pts = tuning_points(group, members[0])
        bind(tune_pts)
        if stage == "tune":
            busy = add(run(held or tune_pts, sweep_name + TUNE_SUFFIX, left(), wait))
            if busy:
                return "tune", busy
            held = None
        rows = read_rows(out)
        tried = {r["run_id"] for r in rows}
        if any(tp.run_id not in tried for tp in tune_pts):  # the time cap stopped the tuning
            return stop
        try:
            chosen, score = pick_best(scores(rows, tune_pts, spec["metric"]))
        except ValueError:
            print(f"{group}: every tuning run failed; its {len(members)} point(s) wait for the next attempt")
            counts["failed"] += len(members)
            return None
        if stage == "tune":
            print(f"{group}: chose {value_label(chosen)} (valid {spec['metric']} {score:.4f})")
        finals = final_points(members, chosen, score)
        bind(finals)
        if left() is None:
            return stop
        busy = add(run(held or finals, sweep_name, left(), wait))
        return ("final", busy) if busy else None

    plain = [p for p in points if not getattr(p, "tune", None)]
    if plain:
        add(run(plain, sweep_name, max_minutes, True))
    fresh = list(groups(points).items())
    aside: list = []  # (group, members, stage, held runs)
    while fresh or aside:
        if fresh:  # the set-aside groups, looked at without waiting, then the next new group
            todo = [(*a, False) for a in aside] + [(*fresh.pop(0), "tune", None, False)]
            aside = []
        else:  # no new group left: wait for the held runs
            todo = [(*aside.pop(0), True)]
        for group, members, stage, held, wait in todo:
            if left() is None:
                print(f"time cap of {max_minutes:g} min reached; rerun the same command to continue")
                return counts
            result = advance(group, members, stage, held, wait)
            if result is stop:
                return counts
            if result:
                if held is None or result[0] != stage:  # said once per stage, not at every look
                    what = "tuning runs" if result[0] == "tune" else "seeds"
                    print(f"{group}: another process holds {len(result[1])} of its {what}; "
                          "taking up other groups first")
                aside.append((group, members, *result))
    return counts


def plan_tuned(points: list, rows: list[dict], bind) -> tuple[dict[str, tuple[str, str, dict | None]], int, int]:
    """Where the tuned points of a sweep stand, from the rows of its CSV: {point name: (status, run id,
    chosen values)} with status 'done' (an ok row), 'run' (tuned, not run yet) or 'tuning' (its group's
    tuning is unfinished: run id unknown), plus (tuning runs with a row, tuning runs in all). bind(points)
    gives points their run ids (the dry run: from the data fingerprints the rows record)."""
    done = {r["run_id"] for r in rows if r.get("status") == "ok"}
    tried = {r["run_id"] for r in rows}
    out: dict = {}
    n_done = n_all = 0
    for group, members in groups(points).items():
        tune_pts = tuning_points(group, members[0])
        bind(tune_pts)
        n_all += len(tune_pts)
        n_done += sum(tp.run_id in tried for tp in tune_pts)
        try:
            if any(tp.run_id not in tried for tp in tune_pts):
                raise ValueError("unfinished")
            chosen, score = pick_best(scores(rows, tune_pts, members[0].tune["metric"]))
        except ValueError:
            out.update({m.name: ("tuning", "", None) for m in members})
            continue
        finals = final_points(members, chosen, score)
        bind(finals)
        out.update({f.name: ("done" if f.run_id in done else "run", f.run_id, chosen) for f in finals})
    return out, n_done, n_all


def plan_note(points: list) -> str:
    """One line for the sweep plan: how many tuning runs come before the tuned points ('' if none)."""
    grouped = groups(points)
    if not grouped:
        return ""
    n = sum(len(combos(m[0].tune["grid"])) for m in grouped.values())
    spec = next(iter(grouped.values()))[0].tune
    return (f"  tuning: {len(grouped)} group(s) x grid {spec['grid']} = {n} validation runs (seed {spec['seed']}, "
            f"{spec['metric']}) before their points; a tuned point's run id is known only once tuned")


def grid_effects(rows: list[dict], metric: str) -> dict[str, dict]:
    """Did each key of a sweep's tuning grid matter? For every key: the tuning runs (ok rows of a `<name>/tune`
    sweep) that differ in that key alone (same point group, same other grid values) form a set; per set, the
    spread (max - min) of the validation `metric`, relative to its max. Returns {key: {sets, equal (spread
    below 0.5e-4 absolute, i.e. equal to 4 decimals), median_rel, max_rel}}; {} without tuning rows."""
    import json
    from statistics import median

    grid = next((g for g in (json.loads(r.get("extra") or "{}").get("tune_grid") for r in rows) if g), None)
    tune = [r for r in rows if r.get("status") == "ok" and r.get("sweep", "").endswith(TUNE_SUFFIX)]
    if not grid or not tune:
        return {}

    def value(cfg: dict, key: str):
        for part in key.split("."):
            cfg = cfg.get(part, {}) if isinstance(cfg, dict) else {}
        return json.dumps(cfg)

    out = {}
    for key in grid:
        sets: dict[tuple, list[float]] = {}
        for r in tune:
            cfg = json.loads(r["config"])
            others = tuple(value(cfg, k) for k in grid if k != key)
            sets.setdefault((r["point"].split("-tune-")[0], others), []).append(float(r[metric]))
        spreads = [(max(v) - min(v), (max(v) - min(v)) / max(v) if max(v) else 0.0) for v in sets.values()
                   if len(v) > 1]
        if spreads:
            out[key] = {"sets": len(spreads), "equal": sum(a < 0.5e-4 for a, _ in spreads),
                        "median_rel": median(r for _, r in spreads), "max_rel": max(r for _, r in spreads)}
    return out
