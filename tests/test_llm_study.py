"""benchmarks/llm_study.py (claim 5's reading) on stand-in rows: two cheap models named as the study's
points, paired verdicts by the stated rule, rank files collected so the comparison reruns without the run
folders, points not run yet reported as missing."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _script():
    spec = importlib.util.spec_from_file_location("llm_study", REPO / "benchmarks" / "llm_study.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_verdict_rule():
    study = _script()
    assert study.verdict([0.001, 0.02]) == "agrees"
    assert study.verdict([-0.02, -0.001]) == "disagrees"
    assert study.verdict([-0.01, 0.01]) == "not resolved at this scale"


def test_llm_study_reads_paired_verdicts_from_rows(make_cfg, tmp_path, capsys):
    from genrec.pipeline import run_point
    from genrec.scaling.leaderboard import append_row, make_row
    from genrec.scaling.paired import paired_difference

    study = _script()
    csv_path = tmp_path / "llm.csv"
    stand_in = {"smollm2-plain-r8": ("random", [0, 1]), "smollm2-cf-r8": ("popularity", [0]),
                "gemma3-plain-r8": ("popularity", [0]), "gemma3-cf-r8": ("random", [0]),
                "ref-popularity": ("popularity", [0])}
    for point, (model, seeds) in stand_in.items():
        for s in seeds:
            cfg = make_cfg(f"run.model={model}", f"run.seed={s}", "eval.max_users=60", "eval.sample_seed=0")
            append_row(csv_path, make_row(cfg, run_point(cfg), sweep="t", point=f"{point}-s{s}"))
    ranks = tmp_path / "ranks"
    assert study.main(["--file", str(csv_path), "--collect", "--ranks-dir", str(ranks)]) == 0
    assert len(list(ranks.glob("user_ranks_*.npz"))) == 3  # one per run id: random s0 / s1, popularity s0
    shutil.rmtree(tmp_path / "runs")  # from here on only the collected rank files are there
    capsys.readouterr()
    assert study.main(["--file", str(csv_path), "--ranks-dir", str(ranks)]) == 0
    printed = capsys.readouterr().out
    res = json.loads((tmp_path / "llm_compare.json").read_text())
    size = res["verdicts"]["size"]
    ref = paired_difference(csv_path, "gemma3-plain-r8-*", "smollm2-plain-r8-*", dirs=[ranks])
    assert size["recall@10"]["diff"] == pytest.approx(ref["diff"]) and size["recall@10"]["users"] == 60
    assert size["verdict"] == study.verdict(ref["ci95"])
    # cf: the smaller model's CF gain minus the larger one's, on the same users
    gains = [res["comparisons"][f"cf_gain_{m}"]["recall@10"]["diff"] for m in ("smollm2", "gemma3")]
    assert res["verdicts"]["cf"]["recall@10"]["diff"] == pytest.approx(gains[0] - gains[1])
    assert gains[0] == pytest.approx(ref["diff"])  # both are popularity - random (seeds 0, 1) here
    assert "missing" in res["comparisons"]["rank64_vs_8"]  # not run: reported, not an error
    assert res["points"]["smollm2-plain-r8"]["seeds"] == 2
    assert "best_llm_vs_popularity" in res["comparisons"] and "size:" in printed
    assert (tmp_path / "llm_flops.png").is_file()
