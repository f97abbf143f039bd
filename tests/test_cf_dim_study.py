"""The dimension study (a sweep file + genrec.scaling.dimstudy) end to end on the synthetic catalogue:
rows, resume, plots and labels; the committed sweep files expand to the study's 180 points."""
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

    for name in ("cf_dim_ml100k", "cf_dim_ml1m"):
        sw = load_sweep(REPO / "configs" / "sweeps" / f"{name}.yaml")
        assert sw.name == name and len(sw.points) == 2 * 3 * 10 * 3
        assert {(p.cfg.run.model, p.cfg.cf.directspec, p.cfg.cf.adap_tau) for p in sw.points} == {
            (m, ds, at) for m in ("mf_bpr", "lightgcn") for ds, at in ((False, False), (True, False), (False, True))}


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
    for lab in labels.values():
        assert lab["label"] in ("double-peak", "logarithmic", "saturating", "collapse")
        assert lab["dims"] == [4, 8, 16] and lab["seeds"] == [2, 2, 2] and len(lab["sem"]) == 3
    assert (tmp_path / "cf_dim_toy_ndcg.png").stat().st_size > 0 and (tmp_path / "cf_dim_toy_erank.png").exists()
