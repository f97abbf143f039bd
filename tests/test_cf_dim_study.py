"""benchmarks/cf_dim_study.py end to end on the synthetic catalogue: rows, resume, plots and labels."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "cf_dim_study.py"
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _study():
    spec = importlib.util.spec_from_file_location("cf_dim_study", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_study_runs_resumes_plots_and_labels(tmp_path):
    from genrec.scaling.leaderboard import read_rows

    study = _study()
    out = tmp_path / "cf_dim_toy.csv"
    argv = ["--models", "mf_bpr", "--dims", "4,8,16", "--seeds", "0,1", "--variants", "plain,adap_tau",
            "--out", str(out), "--set", "data.source=synthetic", "--set", f"run.output_dir={tmp_path / 'runs'}",
            "--set", "train.epochs=2", "--set", "train.eval_every=1"]
    assert study.main(argv) == 0
    rows = read_rows(out)
    assert len(rows) == 12 and {r["status"] for r in rows} == {"ok"} and {r["sweep"] for r in rows} == {"cf_dim_toy"}
    assert {(r["cf_variant"], r["cf_dim"]) for r in rows} == {(v, d) for v in ("plain", "adap_tau") for d in ("4", "8", "16")}
    assert study.main(argv) == 0 and len(read_rows(out)) == 12  # every point done: nothing runs again
    labels = json.loads((tmp_path / "cf_dim_toy_labels.json").read_text())
    assert set(labels) == {"mf_bpr/plain", "mf_bpr/adap_tau"}
    for lab in labels.values():
        assert lab["label"] in ("double-peak", "logarithmic", "saturating")
        assert lab["dims"] == [4, 8, 16] and lab["seeds"] == [2, 2, 2] and len(lab["sem"]) == 3
    assert (tmp_path / "cf_dim_toy_ndcg.png").stat().st_size > 0 and (tmp_path / "cf_dim_toy_erank.png").exists()
    with pytest.raises(SystemExit):
        study.main(["--variants", "nope", "--out", str(out)])
