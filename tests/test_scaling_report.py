"""Leaderboard table (mean +- std over seeds, one line per configuration), fits and plots of a CSV."""
import json

import numpy as np
import pytest

from genrec.cli import main as cli_main
from genrec.config import load_config
from genrec.errors import ConfigError, GenrecError
from genrec.scaling.leaderboard import append_row, make_row
from genrec.scaling.plots import plot_file
from genrec.scaling.curves import curves
from genrec.scaling.report import NoMetricsError, leaderboard, print_fits, print_leaderboard

LADDER = [(1, 64, 2e5), (2, 96, 8e5), (4, 128, 3e6), (6, 256, 1.2e7), (8, 512, 5e7)]


def _row(overrides, recall, params=0, seed=0, status="ok", sweep="t", point=""):
    cfg = load_config([], ["data.source=synthetic", f"run.seed={seed}", *overrides])
    res = {"run_id": f"{point}-{seed}-{status}", "metrics": {"recall@10": recall, "ndcg@10": recall / 2},
           "params": {"params_non_embedding": params, "params_total": params}, "data": {"name": "synthetic"}}
    return make_row(cfg, res, sweep=sweep, point=point, status=status)


@pytest.fixture
def ladder_csv(tmp_path):
    path = tmp_path / "recsize.csv"
    for layers, width, n in LADDER:
        for seed in (0, 1):
            y = 0.3 - 20.0 * n ** -0.4 + (0.001 if seed else -0.001)
            append_row(path, _row(["run.family=sid", f"sid_model.num_layers={layers}", f"sid_model.d_model={width}"],
                                  y, n, seed, point=f"L{layers}"))
    append_row(path, _row(["run.family=baseline", "run.model=popularity"], 0.05, point="pop"))
    append_row(path, _row(["run.family=sid", "sid_model.num_layers=12"], float("nan"), 1e8, status="failed",
                          point="huge"))
    return path


def test_leaderboard_means_over_seeds(ladder_csv, capsys):
    lb = leaderboard(ladder_csv, metric="recall@10")
    rows = lb["rows"]
    assert len(rows) == len(LADDER) + 1
    assert [r["n"] for r in rows[:5]] == [2] * 5 and rows[-1]["model"] == "popularity"
    means = [r["mean"] for r in rows[:5]]
    assert means == sorted(means, reverse=True)
    top = rows[0]
    assert top["rec_layers"] == "8" and top["mean"] == pytest.approx(0.3 - 20.0 * 5e7 ** -0.4, abs=1e-6)
    assert top["std"] == pytest.approx(np.std([-0.001, 0.001], ddof=1), rel=1e-3) and top["seeds"] == "0,1"
    assert lb["constant"]["dataset"] == "synthetic" and len(lb["failed"]) == 1
    print_leaderboard(ladder_csv, metric="recall@10")
    out = capsys.readouterr().out
    assert "+-" in out and "failed: 1 row(s): huge" in out and "rec_layers" in out
    pop_line = next(line for line in out.splitlines() if " baseline " in line)
    assert "+-" not in pop_line and "0.0500" in pop_line  # one seed: the value and n=1, no "+- 0.0000"
    assert rows[-1]["n"] == 1 and np.isnan(rows[-1]["std"])


def test_group_never_pools_configurations_as_seeds(ladder_csv, capsys):
    with pytest.raises(ConfigError, match=r"--group family would pool different configurations.*rec_layers"):
        leaderboard(ladder_csv, metric="recall@10", group="family")
    assert cli_main(["leaderboard", str(ladder_csv), "--metric", "recall@10", "--group", "model"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "rec_layers" in err
    # columns that separate every configuration are fine: the groups are seeds of one configuration
    cols = "family,model,rec_layers,rec_d_model"
    rows = leaderboard(ladder_csv, metric="recall@10", group=cols)["rows"]
    assert sorted(r["n"] for r in rows) == [1] + [2] * len(LADDER)


def test_csv_without_ranking_metrics_is_one_line(tmp_path, capsys):
    speed = tmp_path / "speed.csv"
    speed.write_text("section,case,ours,reference,unit\ndecode,beam10,82.2,28.2,users/s\n")
    with pytest.raises(NoMetricsError, match="no ranking metrics"):
        leaderboard(speed)
    with pytest.raises(GenrecError):
        plot_file(speed)
    assert cli_main(["leaderboard", str(speed)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a leaderboard" in err and "Traceback" not in err


def test_leaderboard_errors_and_cli(ladder_csv, capsys):
    with pytest.raises(ConfigError, match="recall@11"):
        leaderboard(ladder_csv, metric="recall@11")
    with pytest.raises(ConfigError, match="nocol"):
        leaderboard(ladder_csv, group="family,nocol")
    with pytest.raises(ConfigError, match="not found"):
        leaderboard(ladder_csv.parent / "missing.csv")
    assert cli_main(["leaderboard", str(ladder_csv), "--metric", "recall@10"]) == 0
    assert "recall@10 (mean +- std)" in capsys.readouterr().out
    assert cli_main(["leaderboard", str(ladder_csv), "--metric", "bogus"]) == 2


def test_vs_compares_each_arm_with_its_reference_at_the_same_size(tmp_path, capsys):
    """--vs inject=none: each arm against "none" at the same recommender size, Welch 95% interval."""
    path = tmp_path / "inject.csv"
    base = {"none": 0.10, "cf": 0.101, "encoder": 0.13}
    for layers, lift in ((1, 0.0), (2, 0.02)):
        for arm, y in base.items():
            for seed, noise in enumerate((-0.002, 0.0, 0.002)):
                append_row(path, _row(["run.family=sid", f"sid_model.num_layers={layers}", f"sid_model.inject={arm}"],
                                      y + lift + noise, 1000 * layers, seed, point=f"L{layers}-{arm}"))
    rows = leaderboard(path, metric="recall@10", vs="inject=none", show="ndcg@10,params_total")["rows"]
    by = {(r["rec_layers"], r["inject"]): r for r in rows}
    assert by[("1", "none")]["vs"] == "ref" and by[("2", "none")]["vs"] == "ref"
    d, lo, hi = by[("2", "encoder")]["vs"]
    assert d == pytest.approx(0.03) and 0 < lo < d < hi  # same noise on both sides: a clear lift
    d, lo, hi = by[("1", "cf")]["vs"]
    assert d == pytest.approx(0.001) and lo < 0 < hi  # inside the noise
    from genrec.scaling.report import welch_interval
    _, lo1, hi1 = welch_interval({"mean": 1.0, "std": 0.1, "n": 3}, {"mean": 0.0, "std": 0.1, "n": 3})
    assert (hi1 - lo1) / 2 == pytest.approx(2.776 * 0.1 * (2 / 3) ** 0.5, rel=1e-3)  # t(0.975, df=4)
    assert cli_main(["leaderboard", str(path), "--metric", "recall@10", "--vs", "inject=none",
                     "--show", "params_total"]) == 0
    out = capsys.readouterr().out
    assert "diff vs inject=none [95% CI]" in out and "params_total" in out and " ~0" in out
    assert "compute: 18 ok rows" in out
    with pytest.raises(ConfigError, match="no configuration .* inject=bogus"):
        leaderboard(path, metric="recall@10", vs="inject=bogus")
    with pytest.raises(ConfigError, match="COLUMN=VALUE"):
        leaderboard(path, metric="recall@10", vs="nosuchcol=1")
    with pytest.raises(ConfigError, match="--show 'nocol'"):
        leaderboard(path, metric="recall@10", show="nocol")


def test_fit_and_plot_size_ladder(ladder_csv, capsys):
    fits = print_fits(ladder_csv, metric="recall@10", n_boot=30)
    assert len(fits) == 1 and fits[0]["x"] == "params_non_embedding"
    f = fits[0]["fit"]
    assert f.params["a"] == pytest.approx(0.4, rel=0.05) and f.r2 > 0.99 and f.identified
    assert "fit sid" in capsys.readouterr().out
    summary = []
    paths = plot_file(ladder_csv, metric="recall@10", n_boot=30, summary=summary)
    assert paths == [str(ladder_csv.with_suffix(".png"))]
    (panel,) = summary
    assert panel["fit_curves"] == 1 and not panel["notes"]
    assert "2 seeds" in panel["title"] and "dataset synthetic" in panel["title"]
    assert any(t.startswith("fit:") for t in panel["legend"])
    png = ladder_csv.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    saved = json.loads((ladder_csv.parent / "recsize_fits.json").read_text())
    assert saved[0]["params"]["a"] == pytest.approx(0.4, rel=0.05) and saved[0]["identified"] is True


def test_plot_draws_no_curve_for_a_fit_that_is_not_identified(tmp_path):
    path = tmp_path / "flat.csv"
    noise = np.random.default_rng(3).normal(0.1, 0.01, size=(len(LADDER), 2))
    for (layers, width, n), ys in zip(LADDER, noise):
        for seed, y in enumerate(ys):
            append_row(path, _row(["run.family=sid", f"sid_model.num_layers={layers}", f"sid_model.d_model={width}"],
                                  float(y), n, seed, point=f"L{layers}"))
    summary = []
    plot_file(path, metric="recall@10", n_boot=20, summary=summary)
    (panel,) = summary
    assert panel["fit_curves"] == 0 and "not identified" in panel["notes"][0]
    assert not any(t.startswith("fit:") for t in panel["legend"]) and "2 seeds" in panel["title"]
    (fit,) = json.loads((tmp_path / "flat_fits.json").read_text())
    assert fit["identified"] is False and "a" in fit["not_identified"]


def test_lines_join_only_points_that_differ_on_the_plotted_axis():
    def row(llm, n, y, dataset="ml-1m", layers=""):
        return {"family": "llm", "model": "lora", "llm_model": llm, "rec_layers": layers, "dataset": dataset,
                "params_non_embedding": str(n), "recall@10": str(y), "seed": "0"}

    two_llms = [row("smollm2-135m", 1.07e8, 0.02), row("gemma3-270m", 1.01e8, 0.03)]
    cs = curves(two_llms, "recall@10", "params_non_embedding", fit=False)
    assert sorted(len(c.xs) for c in cs) == [1, 1]  # two markers, not one line
    ladder = [row("", n, 0.1, layers=str(i)) for i, n in enumerate((1e5, 1e6, 1e7))]
    assert [len(c.xs) for c in curves(ladder, "recall@10", "params_non_embedding", fit=False)] == [3]
    other_data = ladder + [row("", 1e6, 0.2, dataset="ml-100k", layers="1")]
    assert sorted(len(c.xs) for c in curves(other_data, "recall@10", "params_non_embedding", fit=False)) == [1, 3]


def test_a_shared_point_joins_the_line_of_another_sweep_only_when_settings_agree():
    def ladder(sweep, sizes, extra=()):
        return [_row(["run.family=sid", f"sid_model.num_layers={layers}", f"sid_model.d_model={width}", *extra],
                     0.1 + 0.01 * layers, n, sweep=sweep, point=f"{sweep}-L{layers}") for layers, width, n in sizes]

    shared = ladder("inject", LADDER[:2]) + ladder("size", LADDER[2:])  # the size sweep reuses two points
    (line,) = curves(shared, "recall@10", "params_non_embedding", fit=False)
    assert len(line.xs) == len(LADDER) and "sweep" not in line.label
    other = ladder("inject", LADDER[:2], ["train.epochs=3"]) + ladder("size", LADDER[2:])
    cs = curves(other, "recall@10", "params_non_embedding", fit=False)
    assert sorted((c.label.split("sweep=")[1], len(c.xs)) for c in cs) == [("inject", 2), ("size", 3)]


def test_plot_without_axes_is_a_bar_chart(tmp_path):
    path = tmp_path / "quick.csv"
    for fam, model, r in (("baseline", "popularity", 0.05), ("baseline", "random", 0.01), ("cf", "mf_bpr", 0.1)):
        append_row(path, _row([f"run.family={fam}", f"run.model={model}"], r, point=model))
    out = tmp_path / "plots"
    paths = plot_file(path, out_dir=out)
    assert paths == [str(out / "quick.png")] and (out / "quick.png").stat().st_size > 5_000
    lb = print_leaderboard(path, metric="recall@10")
    assert [r["n"] for r in lb] == [1, 1, 1]
    with pytest.raises(ConfigError, match="no ok rows"):
        empty = tmp_path / "empty.csv"
        append_row(empty, _row(["run.family=cf"], 0.1, status="failed"))
        plot_file(empty)


def _compute_row(overrides, recall, flops, params=1e5, seed=0, point=""):
    cfg = load_config([], ["data.source=synthetic", f"run.seed={seed}", *overrides])
    params = {"params_non_embedding": params, "params_total": params}
    if flops is not None:
        params["train_flops"] = flops
    res = {"run_id": f"{point}-{seed}", "metrics": {"recall@10": recall}, "params": params,
           "data": {"name": "synthetic"}}
    return make_row(cfg, res, sweep="t", point=point)


@pytest.fixture
def compute_csv(tmp_path):
    """Popularity (no training), an MF dimension pair, a SID size ladder (2 seeds), an LLM, an old row."""
    path = tmp_path / "compute.csv"
    append_row(path, _compute_row(["run.family=baseline", "run.model=popularity"], 0.05, 0.0, 0, point="pop"))
    for dim, flops, y in ((32, 5e11, 0.09), (64, 2e12, 0.10)):
        append_row(path, _compute_row(["run.family=cf", "run.model=mf_bpr", f"cf.dim={dim}"], y, flops,
                                      point=f"mf{dim}"))
    for (layers, width, n), flops, y in zip(LADDER[:3], (1e12, 4e12, 1.6e13), (0.08, 0.11, 0.12)):
        for seed in (0, 1):
            append_row(path, _compute_row(["run.family=sid", "run.model=tiger", f"sid_model.num_layers={layers}",
                                           f"sid_model.d_model={width}"], y + (0.002 if seed else -0.002), flops,
                                          n, seed, point=f"L{layers}"))
    append_row(path, _compute_row(["run.family=llm", "run.model=lora"], 0.03, 1e14, 1e8, point="llm"))
    append_row(path, _compute_row(["run.family=cf", "run.model=mf_bpr", "cf.dim=128"], 0.5, None, point="old"))
    return path


def test_compute_frontier_names_the_family_at_each_step(compute_csv):
    from genrec.scaling.leaderboard import read_rows
    from genrec.scaling.plots import compute_frontier

    steps = compute_frontier(read_rows(compute_csv), "recall@10")
    assert [(s["family"], s["point"]) for s in steps] == [("baseline", "pop"), ("cf", "mf32"), ("cf", "mf64"),
                                                         ("sid", "L2"), ("sid", "L4")]
    assert [s["flops"] for s in steps] == [0.0, 5e11, 2e12, 4e12, 1.6e13]
    assert [s["value"] for s in steps] == pytest.approx([0.05, 0.09, 0.10, 0.11, 0.12])  # seed means
    assert all(a["value"] < b["value"] for a, b in zip(steps, steps[1:]))  # never worse with more compute


def test_plot_against_training_flops(compute_csv, tmp_path, capsys):
    summary = []
    out = tmp_path / "plots"
    paths = plot_file(compute_csv, out_dir=out, summary=summary, x="flops")
    assert paths == [str(out / "compute_flops.png")]
    png = (out / "compute_flops.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    (panel,) = summary
    legend = panel["legend"]
    assert {"sid/tiger", "cf/mf_bpr", "llm/lora"} <= set(legend)  # a size ladder or a cf_dim ladder is one line
    assert "baseline/popularity (no training)" in legend and any(t.startswith("frontier") for t in legend)
    assert [s["family"] for s in panel["frontier"]] == ["baseline", "cf", "cf", "sid", "sid"]
    assert panel["left_out"] == 1 and "training compute" in panel["title"]
    assert cli_main(["plot", str(compute_csv), "--x", "flops", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "compute_flops.png")
    assert cli_main(["plot", str(compute_csv), "--out", str(out)]) == 0  # --x params: the size panels
    assert (out / "compute.png").exists()
    with pytest.raises(ConfigError, match="--x"):
        plot_file(compute_csv, x="tokens")


def test_flops_plot_needs_train_flops(tmp_path):
    path = tmp_path / "old.csv"
    append_row(path, _compute_row(["run.family=cf", "run.model=mf_bpr"], 0.1, None, point="old"))
    with pytest.raises(ConfigError, match="train_flops"):
        plot_file(path, x="flops")


def test_categorical_axis_keeps_the_sweep_order(tmp_path):
    """Encoders plotted in the order the sweep ran them (small to large), not alphabetically."""
    from genrec.scaling.plots import _draw_categories
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = tmp_path / "enc.csv"
    for enc in ("minilm-l6", "mpnet-base", "gemma3-270m"):
        append_row(path, _row(["run.family=sid", f"encoder.name={enc}"], 0.1, 1000, point=enc))
    from genrec.scaling.leaderboard import read_rows
    cs = curves(read_rows(path), "recall@10", "encoder")
    fig, ax = plt.subplots()
    assert _draw_categories(ax, cs) == ["minilm-l6", "mpnet-base", "gemma3-270m"]
    plt.close(fig)


def test_compare_pairs_users_across_seeds_and_finds_rank_files(make_cfg, tmp_path):
    import shutil

    from genrec.errors import DataError
    from genrec.pipeline import run_point
    from genrec.scaling.leaderboard import append_row, make_row
    from genrec.scaling.paired import paired_difference

    csv_path = tmp_path / "cmp.csv"
    means = {}
    for model, seeds in (("popularity", [0]), ("random", [0, 1])):
        for s in seeds:
            cfg = make_cfg(f"run.model={model}", f"run.seed={s}", "eval.max_users=80", "eval.sample_seed=1")
            res = run_point(cfg)
            means.setdefault(model, []).append(res["metrics"]["recall@10"])
            append_row(csv_path, make_row(cfg, res, sweep="t", point=f"{model}-s{s}"))
    r = paired_difference(csv_path, "popularity-*", "random-*", "recall@10")
    assert r["users"] == 80 and r["runs_a"] == 1 and r["runs_b"] == 2
    assert r["mean_a"] == pytest.approx(means["popularity"][0])
    assert r["mean_b"] == pytest.approx(np.mean(means["random"]))  # per-user mean over seeds = mean of rows
    assert r["diff"] == pytest.approx(r["mean_a"] - r["mean_b"])
    assert r["ci95"][0] < r["diff"] < r["ci95"][1]
    assert 0 < r["a_wins"] + r["b_wins"] <= r["users"]
    # rank files copied to a flat folder are found there once the run folders are gone
    flat = tmp_path / "ranks"
    flat.mkdir()
    for f in (tmp_path / "runs").rglob("user_ranks_*.npz"):
        shutil.copy(f, flat / f.name)
    shutil.rmtree(tmp_path / "runs")
    with pytest.raises(DataError, match="no per-user ranks"):
        paired_difference(csv_path, "popularity-*", "random-*")
    assert paired_difference(csv_path, "popularity-*", "random-*", dirs=[flat])["diff"] == pytest.approx(r["diff"])
    with pytest.raises(DataError, match="leaderboard file not found"):
        paired_difference(tmp_path / "nope.csv", "popularity-*", "random-*")
    with pytest.raises(DataError, match="no ok row has a point matching --b"):
        paired_difference(csv_path, "popularity-*", "nope-*", dirs=[flat])
    assert cli_main(["compare", str(csv_path), "--a", "popularity-*", "--b", "nope-*"]) == 2  # one line, no trace
    assert cli_main(["compare", str(csv_path), "--a", "popularity-*", "--b", "random-*", "--ranks", str(flat)]) == 0
    # difference of differences: (a - b) - (b - a) = 2 (a - b) user by user; (a - b) - (a - b) = 0 exactly
    dd = paired_difference(csv_path, "popularity-*", "random-*", dirs=[flat], c="random-*", d="popularity-*")
    assert dd["diff"] == pytest.approx(2 * r["diff"]) and dd["diff_ab"] == pytest.approx(r["diff"])
    assert dd["ci95"][0] == pytest.approx(2 * r["ci95"][0]) and dd["users"] == r["users"]
    zero = paired_difference(csv_path, "popularity-*", "random-*", dirs=[flat], c="popularity-*", d="random-*")
    assert zero["diff"] == 0 and zero["ci95"] == [0, 0]
    with pytest.raises(DataError, match="--c and --d go together"):
        paired_difference(csv_path, "popularity-*", "random-*", dirs=[flat], c="random-*")
    assert cli_main(["compare", str(csv_path), "--a", "popularity-*", "--b", "random-*", "--c", "random-*",
                     "--d", "popularity-*", "--ranks", str(flat)]) == 0


def test_leaderboard_ranks_test_rows_and_names_configurations_it_cannot_tell_apart(tmp_path, capsys):
    path = tmp_path / "tuned.csv"
    for lr, y in ((1e-2, 0.30), (3e-3, 0.20)):  # tuning runs on validation: differ only in train.lr
        append_row(path, _row(["run.family=cf", "eval.split=valid", f"train.lr={lr}"], y, sweep="t/tune",
                              point=f"mf-tune-lr{lr}"))
    for seed in (0, 1):
        append_row(path, _row(["run.family=cf", "train.lr=0.01"], 0.10 + seed / 100, seed=seed, point="mf"))
    lb = leaderboard(path, metric="recall@10")
    assert [(r["n"], r["mean"]) for r in lb["rows"]] == [(2, pytest.approx(0.105))]  # no valid figure among them
    assert "left out: 2 ok row(s) evaluated on valid" in lb["note"] and "point" not in lb["columns"]
    val = leaderboard(path, metric="recall@10", split="valid")
    assert [r["point"] for r in val["rows"]] == ["mf-tune-lr0.01", "mf-tune-lr0.003"] and "point" in val["columns"]
    assert len(leaderboard(path, metric="recall@10", split="all")["rows"]) == 3
    assert cli_main(["leaderboard", str(path), "--metric", "recall@10"]) == 0
    assert "left out: 2" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="--split"):
        leaderboard(path, metric="recall@10", split="train")
