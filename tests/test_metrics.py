"""Metric functions against hand-computed values, ties included."""
import math

import numpy as np
import pytest

from genrec.eval.metrics import MISS, greater_ties_from_scores, metrics_from_gt, positions_from_topk


def test_single_rank_values():
    # target at rank 3 (2 items above, no ties)
    m = metrics_from_gt(np.array([2]), np.array([0]), [1, 3, 5])
    assert m["recall@1"][0] == 0 and m["recall@3"][0] == 1 and m["recall@5"][0] == 1
    assert m["ndcg@3"][0] == pytest.approx(1 / math.log2(4))
    assert m["mrr@5"][0] == pytest.approx(1 / 3)
    assert m["ndcg@1"][0] == 0 and m["mrr@1"][0] == 0


def test_ties_are_expected_values():
    # 1 item above, 3 others tied with the target: rank uniform on {2,3,4,5}
    m = metrics_from_gt(np.array([1]), np.array([3]), [3, 10])
    assert m["recall@3"][0] == pytest.approx(2 / 4)
    assert m["recall@10"][0] == pytest.approx(1.0)
    exp_ndcg3 = (1 / math.log2(3) + 1 / math.log2(4)) / 4
    assert m["ndcg@3"][0] == pytest.approx(exp_ndcg3)
    exp_mrr10 = (1 / 2 + 1 / 3 + 1 / 4 + 1 / 5) / 4
    assert m["mrr@10"][0] == pytest.approx(exp_mrr10)


def test_constant_scores_give_chance_level():
    n = 100
    scores = np.zeros((1, n))
    g, t = greater_ties_from_scores(scores, np.array([7]))
    assert g[0] == 0 and t[0] == n - 1
    m = metrics_from_gt(g, t, [10])
    assert m["recall@10"][0] == pytest.approx(10 / n)


def test_scores_to_greater_and_ties():
    s = np.array([[0.1, 0.9, 0.5, 0.5, -np.inf]])
    g, t = greater_ties_from_scores(s, np.array([2]))
    assert (g[0], t[0]) == (1, 1)
    g, t = greater_ties_from_scores(s, np.array([4]))  # a masked target ranks last
    assert g[0] == 4


def test_topk_positions_and_miss():
    top = np.array([[5, 3, 9], [1, 2, 4]])
    pos = positions_from_topk(top, np.array([9, 7]))
    assert pos[0] == 2 and pos[1] == MISS
    m = metrics_from_gt(np.minimum(pos, MISS), np.zeros(2, dtype=np.int64), [3])
    assert m["recall@3"].tolist() == [1.0, 0.0]
    assert m["ndcg@3"][0] == pytest.approx(0.5)
