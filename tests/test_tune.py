"""Tuning on validation inside a sweep (genrec.scaling.tune): grid order, selection and ties, the
convergence rule, the `tune:` sweep key, rows marked as tuning rows, resume; one real tuned sweep."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from genrec.errors import ConfigError
from genrec.scaling.leaderboard import append_row, done_run_ids, make_row, read_rows
from genrec.scaling.sweep import load_sweep
from genrec.scaling.tune import combos, converged, group_name, pick_best, plan_note, run_tuned

REPO = Path(__file__).resolve().parent.parent
BASE = [str(REPO / "configs" / "base.yaml"), str(REPO / "configs" / "data" / "synthetic.yaml")]
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_combos_in_grid_order():
    assert combos({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    assert combos({"a": [3]}) == [{"a": 3}]


def test_pick_best_ties_and_missing():
    a, b, c = {"lr": 1}, {"lr": 2}, {"lr": 3}
    assert pick_best([(a, 0.1), (b, 0.3), (c, 0.2)]) == (b, 0.3)
    assert pick_best([(a, 0.3), (b, 0.3), (c, 0.2)]) == (a, 0.3)  # tie: the first in grid order
    assert pick_best([(a, None), (b, float("nan")), (c, 0.05)]) == (c, 0.05)  # failed runs are left out
    with pytest.raises(ValueError):
        pick_best([(a, None), (b, float("nan"))])


def test_converged_rule():
    assert converged(best_epoch=30, epochs_run=51, max_epochs=100) is True  # early stopping fired
    assert converged(best_epoch=70, epochs_run=100, max_epochs=100) is True  # best at 71% of the run
    assert converged(best_epoch=79, epochs_run=100, max_epochs=100) is True  # 80 epochs = 80%: still in
    assert converged(best_epoch=80, epochs_run=100, max_epochs=100) is False  # best in the last 20%
    assert converged(best_epoch=19, epochs_run=20, max_epochs=20) is False  # best at the last evaluation
    assert converged(best_epoch=-1, epochs_run=20, max_epochs=20) is None  # no validation


def test_group_name_drops_the_seed():
    assert group_name("mf_bpr-plain-dim64-s0") == "mf_bpr-plain-dim64"
    assert group_name("mf_bpr-plain-dim64-s12") == "mf_bpr-plain-dim64"
    assert group_name("lightgcn-adap_tau-dim4") == "lightgcn-adap_tau-dim4"


def _sweep(tmp_path, tune: str, name: str = "tn", grid: str = "{cf.dim: [4, 8]}") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"""
name: {name}
base: {json.dumps(BASE)}
set: {{run.family: cf, run.model: mf_bpr, run.output_dir: {tmp_path / 'runs'}, train.epochs: 2,
       train.eval_every: 1, train.progress: false, train.checkpoint_every: 2}}
grid: {grid}
seeds: [0, 1]
{tune}
""")
    return p


def test_tune_key_parsed_and_checked(tmp_path):
    sw = load_sweep(_sweep(tmp_path, "tune: {grid: {train.lr: [0.01, 0.003]}}"))
    assert len(sw.points) == 4
    assert all(p.tune == {"grid": {"train.lr": [0.01, 0.003]}, "seed": 0, "metric": "recall@10"} for p in sw.points)
    assert "4 validation runs" in plan_note(sw.points)  # 2 groups (dims) x 2 learning rates
    assert load_sweep(_sweep(tmp_path, "")).points[0].tune is None  # files without the key are unchanged
    bad = {"tune: {grid: {train.lr: [0.01]}, seeds: 1}": "unknown key",
           "tune: {grid: {cf.dim: [16]}}": "cannot be tuned",
           "tune: {grid: {train.lr: []}}": "non-empty list",
           "tune: {grid: {train.lr: [0.01]}, metric: auc}": "tune.metric",
           "tune: {grid: {train.nope: [1]}}": "nope",
           "tune: [1, 2]": "expected a mapping"}
    for text, msg in bad.items():
        with pytest.raises(ConfigError, match=msg):
            load_sweep(_sweep(tmp_path, text))


def _fake_runner(out: Path, calls: list):
    """run/bind for run_tuned without training: validation ndcg@10 = lr * 10 - reg (lr 0.01 wins)."""
    from genrec.identity import run_id

    def bind(points):
        for p in points:
            p.run_id = run_id(p.cfg)

    def run(points, sweep, minutes, wait_busy=True):
        counts = {"ok": 0, "failed": 0, "skipped": 0}
        for p in points:
            if p.run_id in done_run_ids(out):
                counts["skipped"] += 1
                continue
            calls.append((sweep, p.name, p.cfg.eval.split, p.cfg.run.seed, p.cfg.train.lr, p.cfg.cf.reg))
            score = 0.5 if p.cfg.eval.split == "test" else p.cfg.train.lr * 10 - p.cfg.cf.reg
            res = {"run_id": p.run_id, "metrics": {"ndcg@10": score, "recall@10": 0.2}, "extra": dict(p.extra)}
            append_row(out, make_row(p.cfg, res, sweep=sweep, point=p.name))
            counts["ok"] += 1
        return counts

    return run, bind


@pytest.mark.slow
def test_run_tuned_selects_marks_rows_and_resumes(tmp_path):
    sw = load_sweep(_sweep(tmp_path, "tune: {grid: {train.lr: [0.003, 0.01], cf.reg: [0.0, 0.001]}, seed: 3, "
                                     "metric: ndcg@10}"))
    out = tmp_path / "tn.csv"
    calls: list = []
    run, bind = _fake_runner(out, calls)
    counts = run_tuned(sw.points, out, "tn", run, bind)
    assert counts["ok"] == 2 * 4 + 4 and counts["failed"] == 0
    tune_calls = [c for c in calls if c[0] == "tn/tune"]
    assert len(tune_calls) == 8 and {c[2] for c in tune_calls} == {"valid"} and {c[3] for c in tune_calls} == {3}
    finals = [c for c in calls if c[0] == "tn"]
    assert {(c[2], c[4], c[5]) for c in finals} == {("test", 0.01, 0.0)}
    assert sorted(c[3] for c in finals) == [0, 0, 1, 1]
    rows = read_rows(out)
    tune_rows = [r for r in rows if r["sweep"] == "tn/tune"]
    assert len(tune_rows) == 8 and {r["eval_split"] for r in tune_rows} == {"valid"}
    assert all(json.loads(r["extra"])["tune_of"] in ("dim4", "dim8") for r in tune_rows)
    for r in (r for r in rows if r["sweep"] == "tn"):
        extra = json.loads(r["extra"])
        assert extra["tuned"] == {"train.lr": 0.01, "cf.reg": 0.0}
        assert extra["tune_grid"] == {"train.lr": [0.003, 0.01], "cf.reg": [0.0, 0.001]}
        assert extra["tune_metric"] == "ndcg@10" and extra["tune_value"] == pytest.approx(0.1)
    calls.clear()  # resume: every tuning and final row is reused, nothing runs again
    again = run_tuned(load_sweep(_sweep(tmp_path, "tune: {grid: {train.lr: [0.003, 0.01], cf.reg: [0.0, 0.001]}, "
                                                  "seed: 3, metric: ndcg@10}")).points, out, "tn", run, bind)
    assert calls == [] and again["skipped"] == 12 and len(read_rows(out)) == 12


@pytest.mark.slow
def test_run_tuned_resumes_a_partial_tuning(tmp_path):
    text = "tune: {grid: {train.lr: [0.003, 0.01]}}"
    sw = load_sweep(_sweep(tmp_path, text, grid="{cf.dim: [4]}"))
    out = tmp_path / "tn.csv"
    calls: list = []
    run, bind = _fake_runner(out, calls)

    def run_one_tuning_then_stop(points, sweep, minutes, wait_busy=True):  # a killed sweep: only the first tuning run
        return run(points[:1], sweep, minutes)

    assert run_tuned(sw.points, out, "tn", run_one_tuning_then_stop, bind)["ok"] == 1
    assert [r["sweep"] for r in read_rows(out)] == ["tn/tune"]  # no point ran on a partial tuning
    calls.clear()
    run_tuned(load_sweep(_sweep(tmp_path, text, grid="{cf.dim: [4]}")).points, out, "tn", run, bind)
    assert [c[0] for c in calls] == ["tn/tune", "tn", "tn"]  # the missing tuning run, then the seeds



@pytest.mark.slow
@pytest.mark.parametrize("held_stage", ["tune", "final"])
def test_a_group_another_process_holds_is_taken_up_last(tmp_path, held_stage):
    """Two processes on one tuned sweep: when another process holds one of a group's runs (a tuning run or
    a seed), this one runs the group's free runs, then the other groups, and only then waits for the held
    run (here the other process finishes it meanwhile: its row appears and is reused)."""
    sw = load_sweep(_sweep(tmp_path, "tune: {grid: {train.lr: [0.003, 0.01]}}"))
    out = tmp_path / "tn.csv"
    calls: list = []
    run, bind = _fake_runner(out, calls)
    held = {"tune": "dim4-tune-lr0.003", "final": "dim4-s1"}[held_stage]
    busy_seen: list = []

    def run_beside_another(points, sweep, minutes, wait_busy=True):
        busy = [p for p in points if p.name == held and p.run_id not in done_run_ids(out)]
        if busy and not wait_busy:
            busy_seen.extend(p.name for p in busy)
            return {**run([p for p in points if p not in busy], sweep, minutes), "busy": busy}
        for p in busy:  # waited for: the other process finishes it and writes its row
            calls.append(("waited", p.name))
            append_row(out, make_row(p.cfg, {"run_id": p.run_id, "metrics": {"ndcg@10": 0.03, "recall@10": 0.2},
                                             "extra": dict(p.extra)}, sweep=sweep, point=p.name))
        return run(points, sweep, minutes)

    counts = run_tuned(sw.points, out, "tn", run_beside_another, bind)
    trained = [c[1] for c in calls if c[0] != "waited"]
    events = [("waited " if c[0] == "waited" else "") + c[1] for c in calls]
    assert set(busy_seen) == {held} and held not in trained  # the other process ran it; its row was reused
    dim8 = [i for i, e in enumerate(events) if e.startswith("dim8")]
    assert events.index(f"waited {held}") > max(dim8)  # waited for only after the other group
    free_dim4 = [i for i, e in enumerate(events) if e.startswith("dim4")]
    if held_stage == "tune":  # the free tuning run before dim8, dim4's seeds after the wait
        assert events[0] == "dim4-tune-lr0.01" and all(i > max(dim8) for i in free_dim4[1:])
    else:  # dim4's tuning and its free seed before dim8
        assert events[:3] == ["dim4-tune-lr0.003", "dim4-tune-lr0.01", "dim4-s0"] and min(dim8) == 3
    assert len(read_rows(out)) == 2 * (2 + 2) and counts["ok"] == 2 * (2 + 2) - 1
    assert counts["failed"] == 0 and "busy" not in counts

@pytest.mark.slow
def test_a_set_aside_group_is_taken_up_as_soon_as_its_held_run_is_done(tmp_path, capsys):
    """Three groups; another process holds one of dim4's tuning runs and finishes it while this process
    tunes dim8. dim4's seeds then run right after dim8, before the next new group (dim16), not at the end."""
    sw = load_sweep(_sweep(tmp_path, "tune: {grid: {train.lr: [0.003, 0.01]}}", grid="{cf.dim: [4, 8, 16]}"))
    out = tmp_path / "tn.csv"
    calls: list = []
    run, bind = _fake_runner(out, calls)
    held = "dim4-tune-lr0.003"
    other: list = []  # the held point, kept to write its row "from the other process"

    def run_beside_another(points, sweep, minutes, wait_busy=True):
        if other and any(p.name.startswith("dim8") for p in points):  # the other process finishes meanwhile
            p = other.pop()
            append_row(out, make_row(p.cfg, {"run_id": p.run_id, "metrics": {"ndcg@10": 0.03, "recall@10": 0.2},
                                             "extra": dict(p.extra)}, sweep=sweep, point=p.name))
        busy = [p for p in points if p.name == held and p.run_id not in done_run_ids(out)]
        assert not (busy and wait_busy), "waited for a run that was free to look at again"
        if busy and not other:
            other.extend(busy)
        return {**run([p for p in points if p not in busy], sweep, minutes), **({"busy": busy} if busy else {})}

    counts = run_tuned(sw.points, out, "tn", run_beside_another, bind)
    events = [c[1] for c in calls]
    assert events == ["dim4-tune-lr0.01", "dim8-tune-lr0.003", "dim8-tune-lr0.01", "dim8-s0", "dim8-s1",
                      "dim4-s0", "dim4-s1", "dim16-tune-lr0.003", "dim16-tune-lr0.01", "dim16-s0", "dim16-s1"]
    assert counts["ok"] == 11 and "busy" not in counts and len(read_rows(out)) == 12
    assert capsys.readouterr().out.count("another process holds") == 1  # said once, not at every look


def test_tuned_sweep_trains_end_to_end(tmp_path, capsys):
    """genrec sweep on the synthetic data: tuning rows, tuned rows with `converged`, seed 0 reusing the
    identical tuning run's training, a rerun that adds nothing, and a dry run that says where the tuned
    points stand (tuning unfinished, then done with their tuned values and run ids)."""
    from genrec.scaling.runner import main

    sweep = _sweep(tmp_path, "tune: {grid: {train.lr: [0.01, 0.003]}, seed: 0}", grid="{cf.dim: [8]}")
    out = tmp_path / "tn.csv"
    argv = ["--sweep", str(sweep), "--out", str(out), "--no-plot"]

    def plan() -> dict:
        capsys.readouterr()
        assert main(argv + ["--dry-run"]) == 0
        return {ln.split()[1]: ln.split() for ln in capsys.readouterr().out.splitlines() if "dim8-s" in ln}

    assert {n: ln[0] for n, ln in plan().items()} == {"dim8-s0": "tuning", "dim8-s1": "tuning"}
    assert main(argv) == 0
    rows = read_rows(out)
    assert sorted(r["sweep"] for r in rows) == ["tn", "tn", "tn/tune", "tn/tune"]
    assert {r["status"] for r in rows} == {"ok"}
    final = [json.loads(r["extra"]) for r in rows if r["sweep"] == "tn"]
    chosen = final[0]["tuned"]["train.lr"]
    tune_scores = {json.loads(r["extra"])["tune_values"]["train.lr"]: float(r["recall@10"])
                   for r in rows if r["sweep"] == "tn/tune"}
    assert chosen == pick_best([({"lr": k}, v) for k, v in tune_scores.items()])[0]["lr"]
    assert all(isinstance(e["converged"], bool) for e in final)
    seed0 = next(json.loads(r["extra"]) for r in rows if r["sweep"] == "tn" and r["seed"] == "0")
    assert "resumed" in seed0  # same training identity as the chosen tuning run: evaluated, not retrained
    assert main(argv) == 0 and len(read_rows(out)) == 4
    ids = {r["point"]: r["run_id"] for r in read_rows(out) if r["sweep"] == "tn"}
    assert {n: (ln[0], ln[3], ln[4]) for n, ln in plan().items()} == {
        n: ("done", rid, f"(lr{chosen:g})") for n, rid in ids.items()}


def test_grid_effects_say_which_tuning_key_moved_the_metric():
    from genrec.scaling.tune import grid_effects

    grid = {"train.lr": [0.01, 0.003], "cf.reg": [0.0, 1e-4]}
    rows = [{"status": "ok", "sweep": "s", "point": "mf-dim4-s1", "extra": json.dumps({"tune_grid": grid}),
             "config": "{}", "ndcg@10": "0.1"}]
    for dim in (4, 16):
        for lr in grid["train.lr"]:
            for reg in grid["cf.reg"]:
                value = 0.05 + (0.01 if lr == 0.01 else 0.0) + (0.001 * dim / 16 if reg else 0.0)
                rows.append({"status": "ok", "sweep": "s/tune", "point": f"mf-dim{dim}-tune-lr{lr}-reg{reg}",
                             "extra": "{}", "ndcg@10": str(value),
                             "config": json.dumps({"train": {"lr": lr}, "cf": {"reg": reg}})})
    eff = grid_effects(rows, "ndcg@10")
    assert eff["train.lr"]["sets"] == 4 and eff["train.lr"]["equal"] == 0
    assert eff["cf.reg"]["sets"] == 4 and eff["cf.reg"]["equal"] == 0
    assert eff["cf.reg"]["max_rel"] == pytest.approx(0.001 / 0.051)  # dim 16 at lr 0.003: 0.050 vs 0.051
    assert eff["train.lr"]["median_rel"] > 0.1
    assert grid_effects(rows[:1], "ndcg@10") == {}


@pytest.mark.slow
def test_processes_of_one_launch_share_a_tuned_sweep(tmp_path):
    """Two processes of one launch (as under accelerate launch, --parallel points) on a tuned sweep: both
    work through the whole list and every run trains once, with --force too (a point with a row from the
    same launch is not run again)."""
    import os
    import subprocess
    import sys

    sweep = _sweep(tmp_path, "tune: {grid: {train.lr: [0.01, 0.003]}}")
    out = tmp_path / "tn.csv"

    def launch(*extra: str) -> list[str]:  # one launcher process starting rank 0 and rank 1, as accelerate does
        cmd = " ".join([sys.executable, "-m", "genrec.cli", "sweep", "--sweep", str(sweep), "--out", str(out),
                        "--no-plot", *extra])
        script = "".join(f"RANK={r} LOCAL_RANK={r} WORLD_SIZE=2 {cmd} > {tmp_path}/rank{r}.log 2>&1 & p{r}=$!; "
                         for r in (0, 1))
        proc = subprocess.run(["bash", "-c", script + "wait $p0; a=$?; wait $p1; exit $((a | $?))"], cwd=REPO,
                              timeout=600,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
        logs = [(tmp_path / f"rank{r}.log").read_text() for r in (0, 1)]
        assert proc.returncode == 0, logs
        return [ln.split(":")[0] for log in logs for ln in log.splitlines() if " ndcg@10=" in ln]

    trained = launch()
    rows = read_rows(out)
    assert len(rows) == 2 * (2 + 2) and len({r["run_id"] for r in rows}) == len(rows)  # 2 dims x (2 lr + 2 seeds)
    assert sorted(trained) == sorted(f"point {r['point']}" for r in rows)  # each run by one process
    again = launch("--force")
    assert len(read_rows(out)) == 2 * len(rows) and sorted(again) == sorted(trained)
