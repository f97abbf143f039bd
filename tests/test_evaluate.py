"""The evaluation protocol: history exclusion, both model interfaces, baselines, the CLI row."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from genrec.data.dataset import EvalSet
from genrec.eval.evaluate import evaluate
from genrec.pipeline import run_point
from genrec.scaling.leaderboard import columns, read_rows


class Fixed:
    def __init__(self, scores):
        self.s = torch.tensor(scores, dtype=torch.float32)

    def score(self, users, histories):
        return self.s[users]


class Lists:
    """A recommend model with fixed ranked lists that honours `exclude` (as generative models do)."""

    def __init__(self, lists):
        self.l = torch.tensor(lists)
        self.seen_exclude = []

    def recommend(self, users, histories, k, exclude=None):
        self.seen_exclude.append(exclude)
        rows = self.l[users]
        if exclude is not None:
            rows = torch.stack([torch.cat([r[~torch.isin(r, torch.as_tensor(e))], torch.full((len(e),), -1)])[:len(r)]
                                for r, e in zip(rows, exclude)])
        return rows[:, :k]


def test_history_exclusion_changes_rank():
    es = EvalSet(np.array([0]), [np.array([0, 1])], np.array([2]))
    m = Fixed([[0.9, 0.8, 0.7, 0.1]])
    on = evaluate(m, es, 4, [1, 3], exclude_history=True)
    off = evaluate(m, es, 4, [1, 3], exclude_history=False)
    assert on["recall@1"] == 1.0 and off["recall@1"] == 0.0 and off["recall@3"] == 1.0
    assert on["exclude_history"] is True


def test_repeated_target_is_a_miss_with_exclusion_and_share_is_reported():
    # users 0 and 2 have their target in the history; user 1 does not
    es = EvalSet(np.array([0, 1, 2, 3]), [np.array([2, 1]), np.array([0]), np.array([3, 3]), np.array([], int)],
                 np.array([2, 2, 3, 1]))
    scores = [[0.1, 0.8, 0.9, 0.0], [0.1, 0.8, 0.9, 0.0], [0.0, 0.1, 0.2, 0.9], [0.0, 0.9, 0.2, 0.1]]
    on = evaluate(Fixed(scores), es, 4, [1], exclude_history=True)
    off = evaluate(Fixed(scores), es, 4, [1], exclude_history=False)
    assert off["recall@1"] == 1.0  # every target ranks first without exclusion
    assert on["recall@1"] == 0.5  # the two repeated targets are masked: misses
    for r in (on, off):
        assert r["target_in_history"] == 0.5 and r["target_in_history_n"] == 2
        assert isinstance(r["target_in_history"], float)
    lists = Lists([[2, 1, 0, 3], [2, 1, 0, 3], [3, 2, 1, 0], [1, 2, 3, 0]])
    on_l = evaluate(lists, es, 4, [1], exclude_history=True)
    assert on_l["recall@1"] == 0.5 and on_l["target_in_history"] == 0.5
    assert evaluate(lists, es, 4, [1], exclude_history=False)["recall@1"] == 1.0


def test_recommend_models_get_the_histories_as_exclude():
    es = EvalSet(np.array([0, 1]), [np.array([3]), np.array([0])], np.array([1, 2]))
    m = Lists([[3, 1, 2], [7, 0, 2]])  # 7 is not an item (n_items=5)
    r = evaluate(m, es, 5, [1, 2, 3], exclude_history=True)
    assert [e.tolist() for e in m.seen_exclude[0]] == [[3], [0]]
    # user 0: [1, 2, -1]: hit at 1; user 1: [7, 2, -1]: hit at 2; 7 is invalid (1 of 4 returned items)
    assert r["recall@1"] == 0.5 and r["recall@2"] == 1.0
    assert r["invalid_rate"] == 1 / 4
    off = evaluate(m, es, 5, [1, 2, 3], exclude_history=False)
    assert m.seen_exclude[-1] is None and off["invalid_rate"] == 1 / 6 and off["recall@1"] == 0.0


def test_popularity_beats_random_on_synthetic(make_cfg):
    pop = run_point(make_cfg("run.model=popularity"))["metrics"]
    rnd = run_point(make_cfg("run.model=random"))["metrics"]
    assert pop["recall@10"] > rnd["recall@10"]
    assert 0 < rnd["recall@10"] < 0.3
    again = run_point(make_cfg("run.model=random"))["metrics"]
    assert again == rnd  # seeded


@pytest.mark.slow
def test_cli_run_appends_row_and_errors_are_one_line(tmp_path):
    lb = tmp_path / "lb.csv"
    base = [sys.executable, "-m", "genrec.cli"]
    ok = subprocess.run(base + ["run", "--set", "data.source=synthetic", "--set", f"run.output_dir={tmp_path}",
                                "--leaderboard", str(lb)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    rows = read_rows(lb)
    assert len(rows) == 1 and set(rows[0]) == set(columns()) and float(rows[0]["recall@10"]) > 0
    bad = subprocess.run(base + ["run", "--set", "data.source=csv", "--set", "data.path=/no/such.csv"],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and "not found: /no/such.csv" in bad.stderr
    bad = subprocess.run(base + ["run", "--set", "train.epochz=1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "train.epochz" in bad.stderr and "Traceback" not in bad.stderr


def test_refit_on_train_plus_valid_uses_the_validated_epochs(make_cfg):
    """train.refit: early-stopped fit, then a fresh fit on train + validation for best_epoch + 1 epochs."""
    cfg = make_cfg("run.family=cf", "run.model=mf_bpr", "cf.dim=8", "train.epochs=4", "train.eval_every=1",
                   "train.refit=true", "train.checkpoint_every=0")
    res = run_point(cfg)
    ex = res["extra"]
    assert ex["refit_epochs"] == ex["first_fit"]["best_epoch"] + 1 and ex["epochs_run"] == ex["refit_epochs"]
    assert res["metrics"]["recall@10"] > 0


def test_fold_valid_puts_each_validation_target_in_training(synthetic):
    _, _, split = synthetic
    folded = split.fold_valid()
    u, t = int(split.valid.users[0]), int(split.valid.targets[0])
    assert len(folded.train[u]) == len(split.train[u]) + 1 and folded.train[u][-1] == t
    assert folded.test is split.test and folded.fingerprint() != split.fingerprint()


def test_exclude_window_masks_only_the_last_items():
    class Fixed:  # item 0 scores highest, then 1, 2, ...
        def score(self, users, histories):
            return torch.arange(6, 0, -1, dtype=torch.float32).expand(len(users), -1)

    ev = EvalSet(np.array([0]), [np.array([0, 1, 2])], np.array([3]))
    full = evaluate(Fixed(), ev, 6, [1])  # 0, 1, 2 masked: item 3 is first
    window = evaluate(Fixed(), ev, 6, [1], exclude_window=1)  # only item 2 masked: item 0 is first
    assert full["recall@1"] == 1.0 and window["recall@1"] == 0.0 and window["exclude_window"] == 1


def test_max_time_s_stops_training_after_the_epoch_that_reaches_it(make_cfg):
    cfg = make_cfg("run.family=cf", "run.model=mf_bpr", "cf.dim=8", "train.epochs=5", "train.max_time_s=1e-9",
                   "train.checkpoint_every=0")
    assert run_point(cfg)["extra"]["epochs_run"] == 1


def test_seeded_user_sample_is_fixed_ordered_and_shared(synthetic):
    _, _, split = synthetic
    ev = split.test
    a, b = ev.select(50, 3), ev.select(50, 3)
    assert len(a) == 50 and a.users.tolist() == b.users.tolist()  # the same users on every call
    assert np.all(np.diff(np.searchsorted(ev.users, a.users)) > 0)  # in their original order, no repeats
    assert a.users.tolist() != ev.select(50, 4).users.tolist()  # another seed, another sample
    assert a.users.tolist() != ev.head(50).users.tolist()
    assert ev.select(50, -1).users.tolist() == ev.head(50).users.tolist()  # -1 = the first N, as before
    pos = {u: i for i, u in enumerate(ev.users.tolist())}
    assert all(a.targets[j] == ev.targets[pos[u]] for j, u in enumerate(a.users.tolist()))


def test_bootstrap_interval_matches_the_binomial_width():
    from genrec.eval.metrics import bootstrap_intervals

    rng = np.random.default_rng(1)
    hits = (rng.random(2000) < 0.2).astype(float)
    lo, hi = bootstrap_intervals({"recall@10": hits})["recall@10"]
    half = 1.96 * np.sqrt(hits.mean() * (1 - hits.mean()) / len(hits))
    assert lo < hits.mean() < hi
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    assert bootstrap_intervals({"x": np.full(30, 0.5)})["x"] == [0.5, 0.5]  # no spread, no interval


def test_run_records_user_intervals_and_per_user_ranks(make_cfg):
    from pathlib import Path

    from genrec.eval.metrics import MISS, metrics_from_gt

    cfg = make_cfg("run.model=popularity", "eval.max_users=60", "eval.sample_seed=0")
    res = run_point(cfg)
    m, ci = res["metrics"], res["extra"]["ci95_users"]
    assert m["users_evaluated"] == 60
    for k in ("recall@10", "ndcg@10", "recall@5"):
        assert ci[k][0] <= m[k] <= ci[k][1]
    saved = np.load(Path(res["run_dir"]) / f"user_ranks_{res['run_id']}.npz")
    per = metrics_from_gt(np.minimum(saved["greater"], MISS), saved["ties"], [10])
    assert per["recall@10"].mean() == pytest.approx(m["recall@10"])  # the file reproduces the row's figure
    from genrec.pipeline import prepare

    ev = prepare(cfg)[1].test.select(60, 0)
    assert saved["users"].tolist() == ev.users.tolist()
