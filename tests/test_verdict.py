"""genrec.scaling.verdict: one verdict per scaling curve, by classify_curve's noise rule, none where the data
cannot give one (too few sizes or seeds, an unfinished line)."""
import pytest

from genrec.config import load_config
from genrec.scaling.leaderboard import append_row, make_row
from genrec.scaling.verdict import verdicts

DIMS = [4, 16, 64, 256, 1024]


def _write(path, model, means, seeds=(0, 1, 2), noise=0.002, dims=DIMS):
    for d, m in zip(dims, means):
        for s in seeds:
            y = m + noise * (s - 1)
            cfg = load_config([], ["data.source=synthetic", "run.family=cf", f"run.model={model}", f"cf.dim={d}",
                                   f"run.seed={s}"])
            res = {"run_id": f"{model}-{d}-{s}", "metrics": {"recall@10": y, "ndcg@10": y / 2},
                   "params": {"params_non_embedding": 0}, "data": {"name": "synthetic"}}
            append_row(path, make_row(cfg, res, sweep="t", point=f"{model}-dim{d}-s{s}"))


def _by_model(path, **kw):
    return {v["line"].split()[0]: v for v in verdicts(path, "recall@10", **kw)}


@pytest.mark.parametrize("means, label, words", [
    ([0.05, 0.07, 0.09, 0.11, 0.13], "logarithmic", "keeps improving up to the largest size (1024)"),
    ([0.05, 0.10, 0.11, 0.11, 0.11], "saturating", "saturates"),
    ([0.05, 0.10, 0.12, 0.09, 0.06], "collapse", "declines: best mean at 64"),
    ([0.100, 0.101, 0.099, 0.100, 0.101], "flat", "flat"),
])
def test_each_shape_gets_its_verdict(tmp_path, means, label, words):
    path = tmp_path / "lb.csv"
    _write(path, "mf_bpr", means)
    v = _by_model(path)["mf_bpr"]
    assert v["label"] == label and words in v["verdict"] and v["sizes"] == 5 and v["min_seeds"] == 3


def test_no_verdict_without_enough_seeds_sizes_or_a_finished_line(tmp_path):
    path = tmp_path / "lb.csv"
    _write(path, "mf_bpr", [0.05, 0.07, 0.09, 0.11, 0.13], seeds=(0, 1))
    _write(path, "lightgcn", [0.05, 0.07, 0.09], dims=DIMS[:3])
    _write(path, "neumf", [0.05, 0.07], dims=DIMS[:2])
    got = _by_model(path)
    assert got["mf_bpr"]["label"] is None and "2 seed(s)" in got["mf_bpr"]["verdict"]
    assert got["lightgcn"]["label"] is None and "unfinished" in got["lightgcn"]["verdict"]
    assert "not resolved" in got["neumf"]["verdict"]
    # a rise that is all noise: best at the largest size, not beyond noise above the smallest
    noisy = tmp_path / "noisy.csv"
    _write(noisy, "mf_bpr", [0.100, 0.100, 0.100, 0.100, 0.104], noise=0.02)
    v = _by_model(noisy)["mf_bpr"]
    assert v["label"] in (None, "flat") and "keeps improving" not in v["verdict"]


def test_plot_prints_verdicts(tmp_path, capsys):
    from genrec.cli import main as cli_main

    path = tmp_path / "lb.csv"
    _write(path, "mf_bpr", [0.05, 0.10, 0.12, 0.09, 0.06])
    assert cli_main(["plot", str(path), "--out", str(tmp_path)]) == 0
    assert "declines: best mean at 64" in capsys.readouterr().out
