"""The dimension study (a sweep file + genrec.scaling.dimstudy) end to end on the synthetic catalogue:
rows, resume, plots and labels (>= 3 seeds, converged share); the committed sweep files expand to the
study's 180 points (108 in the reduced CPU file) with their tuning grid and convergence budget."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "cf_dim_study.py"
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _study():
    spec = importlib.util.spec_from_file_location("cf_dim_study", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_sweeps_are_the_study():
    from genrec.scaling.sweep import load_sweep

    switches = ((False, False), (True, False), (False, True))
    variants = {(m, ds, at) for m in ("mf_bpr", "lightgcn") for ds, at in switches}
    grid = {"train.lr": [1e-2, 3e-3], "cf.reg": [0.0, 1e-4]}
    for file, name, dims in (("cf_dim_ml100k", "cf_dim_ml100k_tuned", 10), ("cf_dim_ml1m", "cf_dim_ml1m_tuned", 10),
                             ("cf_dim_ml100k_cpu", "cf_dim_ml100k_cpu", 6)):
        sw = load_sweep(REPO / "configs" / "sweeps" / f"{file}.yaml")
        assert sw.name == name and len(sw.points) == 2 * 3 * dims * 3
        assert {(p.cfg.run.model, p.cfg.cf.directspec, p.cfg.cf.adap_tau) for p in sw.points} == variants
        for p in sw.points:  # the stated grid and a budget that lets points converge
            assert p.tune == {"grid": grid, "seed": 0, "metric": "ndcg@10"}
            t = p.cfg.train
            assert (t.epochs, t.eval_every, t.patience) == (100, 2, 10)
    cpu = load_sweep(REPO / "configs" / "sweeps" / "cf_dim_ml100k_cpu.yaml")
    assert sorted({p.cfg.cf.dim for p in cpu.points}) == [4, 16, 64, 256, 1024, 2048]


@pytest.mark.slow
def test_study_runs_resumes_plots_and_labels(tmp_path):
    from genrec.scaling.leaderboard import read_rows

    sweep = tmp_path / "cf_dim_toy.yaml"
    sweep.write_text(f"""
name: cf_dim_toy
base: [{REPO / 'configs' / 'runs' / 'cf-dim-ml100k.yaml'}]
set: {{data.source: synthetic, run.output_dir: {tmp_path / 'runs'}, train.epochs: 2, train.eval_every: 1}}
grid: {{cf.dim: [4, 8, 16]}}
seeds: [0, 1]
runs:
  - name: mf_bpr
    set: {{run.model: mf_bpr}}
    points: {{plain: {{}}, adap_tau: {{cf.adap_tau: true}}}}
""")
    study = _study()
    out = tmp_path / "cf_dim_toy.csv"
    argv = ["--sweep", str(sweep), "--out", str(out)]
    assert study.main(argv) == 0
    rows = read_rows(out)
    assert len(rows) == 12 and {r["status"] for r in rows} == {"ok"} and {r["sweep"] for r in rows} == {"cf_dim_toy"}
    assert {(r["cf_variant"], r["cf_dim"]) for r in rows} == {(v, d) for v in ("plain", "adap_tau") for d in ("4", "8", "16")}
    assert study.main(argv) == 0 and len(read_rows(out)) == 12  # every point done: nothing runs again
    labels = json.loads((tmp_path / "cf_dim_toy_labels.json").read_text())
    assert set(labels) == {"mf_bpr/plain", "mf_bpr/adap_tau"}
    for lab in labels.values():  # two seeds: no label, and the reason
        assert lab["label"] is None and "fewer than 3 seeds" in lab["label_reason"]
        assert lab["label_without_noise_test"] in ("double-peak", "logarithmic", "saturating", "collapse")
        assert lab["dims"] == [4, 8, 16] and lab["seeds"] == [2, 2, 2] and len(lab["sem"]) == 3
        assert lab["converged_of"] == 6 and 0 <= lab["converged_share"] <= 1
    assert (tmp_path / "cf_dim_toy_ndcg.png").stat().st_size > 0 and (tmp_path / "cf_dim_toy_erank.png").exists()


def test_labels_need_three_seeds_and_report_convergence(tmp_path):
    """plot_dim_study on hand-written rows: a 3-seed curve is labelled (collapse: a large-d drop beyond
    the t threshold), a curve with 2 seeds at one dim is not; converged shares per curve; tuning rows
    (sweep <name>/tune) are left out."""
    import csv

    from genrec.scaling.dimstudy import plot_dim_study

    rows = []
    means = {4: 0.05, 16: 0.08, 64: 0.10, 256: 0.09, 1024: 0.06}
    for variant, seeds in (("plain", 3), ("adap_tau", 3)):
        for d, m in means.items():
            n = 2 if variant == "adap_tau" and d == 64 else seeds
            for s in range(n):
                extra = {"item_erank": d / 2, "converged": not (variant == "plain" and d == 1024 and s == 0)}
                rows.append({"status": "ok", "sweep": "toy", "model": "mf_bpr", "cf_variant": variant,
                             "cf_dim": d, "ndcg@10": m + 0.001 * (s - 1), "dataset": "x", "extra": json.dumps(extra)})
    rows.append({"status": "ok", "sweep": "toy/tune", "model": "mf_bpr", "cf_variant": "plain", "cf_dim": 4,
                 "ndcg@10": 0.9, "dataset": "x", "extra": json.dumps({"converged": False})})
    path = tmp_path / "toy.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    labels = plot_dim_study(path)
    plain, adap = labels["mf_bpr/plain"], labels["mf_bpr/adap_tau"]
    assert plain["label"] == "collapse" and plain["seeds"] == [3] * 5 and plain["mean"][0] == pytest.approx(0.05)
    assert (plain["converged"], plain["converged_of"], plain["converged_share"]) == (14, 15, round(14 / 15, 3))
    assert adap["label"] is None and "min 2" in adap["label_reason"] and adap["converged_share"] == 1.0
    # seeds m - .001, m, m + .001: the sample std is .001 (the population std, .00082, is not reported)
    assert plain["std"] == [0.001] * 5 and plain["sem"] == [round(0.001 / 3 ** 0.5, 5)] * 5
    assert adap["std"][2] == pytest.approx(0.000707, abs=1e-5)  # 2 seeds at d=64
    assert json.loads((tmp_path / "toy_labels.json").read_text())["mf_bpr/plain"]["label"] == "collapse"


def test_plot_dim_curves_draws_one_variant_from_several_csvs(tmp_path):
    import csv as _csv

    from genrec.scaling.dimstudy import plot_dim_curves
    from genrec.scaling.leaderboard import columns

    paths = []
    # the fine file holds MF-BPR's dims in between (its own sweep); SGL stops at 64 where its file goes to 256
    for stem, curves in (("a_study", {"mf_bpr": (4, 16, 64)}),
                         ("b_study", {"neumf": (4, 16, 64, 256), "sgl": (4, 16, 64)}),
                         ("fine", {"mf_bpr": (8, 32)})):
        p = tmp_path / f"{stem}.csv"
        with open(p, "w", newline="") as f:
            w = _csv.DictWriter(f, fieldnames=columns())
            w.writeheader()
            for model, dims in curves.items():
                for d in dims:
                    for s in range(3):
                        w.writerow({**{c: "" for c in columns()}, "status": "ok", "sweep": stem, "model": model,
                                    "cf_variant": "plain", "cf_dim": d, "ndcg@10": 0.01 * d ** 0.5 + 0.001 * s,
                                    "dataset": "ml-100k", "extra": "{}"})
        paths.append(p)
    out, drawn = plot_dim_curves(paths, tmp_path / "plain.png")
    assert drawn == ["mf_bpr", "neumf", "sgl"] and out.stat().st_size > 5000  # one MF curve from two files
    labels = json.loads((tmp_path / "plain_labels.json").read_text())
    assert labels["mf_bpr/plain"]["dims"] == [4, 8, 16, 32, 64] and labels["mf_bpr/plain"]["label"] == "logarithmic"
    assert labels["neumf/plain"]["label"] is not None
    assert labels["sgl/plain"]["label"] is None and "256" in labels["sgl/plain"]["label_reason"]


def test_unfinished_curve_gets_no_label():
    from genrec.scaling.dimstudy import curve_label

    by_dim = {4: [0.04, 0.041, 0.042], 16: [0.05, 0.051, 0.049], 64: [0.06, 0.061, 0.059]}
    assert curve_label([4, 16, 64], by_dim, None)["label"] is not None
    entry = curve_label([4, 16, 64], by_dim, None, missing=[256, 1024])
    assert entry["label"] is None and "256, 1024" in entry["label_reason"]


def test_fine_dims_share_the_study_settings():
    """cf_dim_ml100k_fine.yaml adds dims {8, 32, 128, 512} to MF-BPR and NeuMF: every point must be the study's
    point apart from cf.dim (base config, tuning grid, seeds, NeuMF tower), or the merged curves mix protocols."""
    from genrec.config import to_dict
    from genrec.identity import flatten_config as flat
    from genrec.scaling.sweep import load_sweep

    sweeps = REPO / "configs" / "sweeps"
    fine = load_sweep(sweeps / "cf_dim_ml100k_fine.yaml").points
    study = {p.name: p for f in ("cf_dim_ml100k_cpu", "cf_dim_ml100k_neumf_sgl")
             for p in load_sweep(sweeps / f"{f}.yaml").points}
    assert sorted({p.cfg.cf.dim for p in fine}) == [8, 32, 128, 512] and len(fine) == 2 * 4 * 3
    for p in fine:
        ref = study[p.name.replace(f"dim{p.cfg.cf.dim}-", "dim4-")]
        a, b = flat(to_dict(p.cfg)), flat(to_dict(ref.cfg))
        assert {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)} == {"cf.dim"} and p.tune == ref.tune


def test_table_and_labels_wait_for_the_planned_dims(tmp_path):
    """study_table from hand-written rows: mean +- sample std, converged seeds, the chosen lr / L2, CPU hours
    (each run folder's training once: a seed-0 row that reused its tuning run's folder counts its evaluation
    only, a training resumed after a cut counts in full); a curve
    missing a dim its sweep file plans gets no label in the table nor in plot_dim_study, even when no
    curve has that dim yet; a planned curve without rows is listed as such."""
    import csv

    from genrec.scaling.dimstudy import plot_dim_study, study_table

    rows = []
    for d, m in {4: 0.02, 16: 0.03, 64: 0.04}.items():
        for s in range(3):
            cfg = {"train": {"lr": 0.003 if d == 64 else 0.01}, "cf": {"reg": 0.0001}}
            # seed 0 reuses its tuning run's folder; seed 1 at d=64 was cut and resumed in its own folder
            extra = {"converged": s != 2 or d != 16, "resumed": s == 0 or (s == 1 and d == 64),
                     "run_dir": f"runs/{d}-{s}"}
            rows.append({"status": "ok", "sweep": "toy", "model": "mf_bpr", "cf_variant": "plain", "cf_dim": d,
                         "ndcg@10": m + 0.001 * (s - 1), "dataset": "x", "train_time_s": 100, "eval_time_s": 10,
                         "config": json.dumps(cfg), "extra": json.dumps(extra)})
        rows.append({**rows[-3], "sweep": "toy/tune", "ndcg@10": 0.5,  # the tuning run seed 0 reused
                     "extra": json.dumps({"run_dir": f"runs/{d}-0"})})
    path = tmp_path / "toy.csv"

    def write():
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)

    write()
    done = study_table(path).splitlines()
    assert done[0] == "| curve | d=4 | d=16 | d=64 | label | CPU h |"
    # per dim: 4 rows x 10 s eval + 3 folders x 100 s training (seed 0 and its tuning run share one)
    assert done[2] == ("| mf_bpr plain | .0200 +- .0010 (3/3; 0.01, 0.0001) | .0300 +- .0010 (2/3; 0.01, 0.0001) | "
                       f".0400 +- .0010 (3/3; 0.003, 0.0001) | logarithmic | {3 * (40 + 300) / 3600:.2f} |")
    planned = {("mf_bpr", "plain"): [4, 16, 64, 256], ("lightgcn", "plain"): [4, 16, 64, 256]}
    table = study_table(path, planned=planned).splitlines()
    assert table[0] == "| curve | d=4 | d=16 | d=64 | d=256 | label | CPU h |"
    assert table[2].endswith("| — | none (unfinished: no rows at dim 256) | 0.28 |")
    assert table[3] == "| lightgcn plain | — | — | — | — | none (no rows yet) | 0.00 |"
    rows[0]["device"] = "cuda:0"  # a row from a GPU: hours per device kind
    write()
    mixed = study_table(path).splitlines()
    assert mixed[0].endswith("| label | hours |")
    assert mixed[2].endswith(f"| {(3 * 340 - 10) / 3600:.2f} CPU + {10 / 3600:.2f} CUDA |")
    assert plot_dim_study(path)["mf_bpr/plain"]["label"] == "logarithmic"
    unfinished = plot_dim_study(path, planned=planned)["mf_bpr/plain"]
    assert unfinished["label"] is None and "256" in unfinished["label_reason"]


def test_max_dim_labels_the_measured_range_apart(tmp_path):
    """max_dim: a curve whose largest planned dim has no rows is labelled over the dims <= max_dim, in its own
    labels file (the full-range file keeps it unlabelled); a dim <= max_dim with too few seeds still blocks
    the label; the table's label column says its range; the script rejects a bad --max-dim in one line."""
    import csv

    from genrec.scaling.dimstudy import plot_dim_study, study_table

    rows = []
    for d, m in {4: 0.02, 16: 0.05, 64: 0.08, 256: 0.06}.items():
        for s in range(3 if d != 16 else 2):
            rows.append({"status": "ok", "sweep": "toy", "model": "lightgcn", "cf_variant": "plain", "cf_dim": d,
                         "ndcg@10": m + 0.001 * (s - 1), "dataset": "x",
                         "extra": json.dumps({"converged": d != 256})})
    rows.append({**rows[-1], "model": "mf_bpr", "cf_dim": 2048})  # a dim beyond max_dim (one seed)
    path = tmp_path / "toy.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    planned = {("lightgcn", "plain"): [4, 16, 64, 256, 2048]}
    full = plot_dim_study(path, planned=planned)["lightgcn/plain"]
    assert full["label"] is None and "2048" in full["label_reason"]
    part = plot_dim_study(path, planned=planned, max_dim=1024)["lightgcn/plain"]
    assert part["label"] is None and "min 2" in part["label_reason"] and part["max_dim"] == 1024
    rows[:0] = [{**rows[3], "ndcg@10": 0.05}]  # a third seed at d=16
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    part = plot_dim_study(path, planned=planned, max_dim=1024)["lightgcn/plain"]
    assert part["label"] == "collapse" and part["dims"] == [4, 16, 64, 256] and "<= 1024" in part["label_reason"]
    assert (part["converged"], part["converged_of"]) == (9, 12)
    saved = json.loads((tmp_path / "toy_labels_max1024.json").read_text())
    assert saved["lightgcn/plain"]["label"] == "collapse"
    assert json.loads((tmp_path / "toy_labels.json").read_text())["lightgcn/plain"]["label"] is None
    table = study_table(path, planned=planned, max_dim=1024).splitlines()
    assert "| label (d <= 1024) |" in table[0] and "| collapse |" in table[[r.startswith("| lightgcn") for r in table].index(True)]
    assert study_table(path, planned=planned).splitlines()[0].endswith("| label | CPU h |")
    assert _study().main(["--plot-only", "--max-dim", "x"]) == 2
