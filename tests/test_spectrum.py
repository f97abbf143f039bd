"""Spectrum diagnostics against hand-computed values, and the curve classifier on synthetic curves."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genrec.eval.spectrum import (classify_curve, effective_rank, energy_share, noise_threshold,
                                  norm_popularity_spearman, singular_values, spectrum_report)


def test_identity_has_full_effective_rank():
    assert effective_rank(np.eye(7)) == pytest.approx(7.0)
    assert effective_rank(torch.eye(5) * 3.0) == pytest.approx(5.0)  # scale-invariant


def test_low_rank_matrices():
    rng = np.random.default_rng(0)
    r2 = rng.normal(size=(30, 2)) @ rng.normal(size=(2, 10))
    assert 1.0 < effective_rank(r2) <= 2.0 + 1e-9
    r1 = np.outer(np.arange(1, 6), np.ones(4))
    assert effective_rank(r1) == pytest.approx(1.0)
    assert effective_rank(np.zeros((3, 3))) == 0.0


def test_hand_computed_spectrum():
    m = np.diag([3.0, 1.0])  # sigma = (3, 1): p = (3/4, 1/4)
    s = singular_values(m)
    assert s.tolist() == pytest.approx([3.0, 1.0])
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert effective_rank(m) == pytest.approx(math.exp(h))
    assert effective_rank(s) == pytest.approx(math.exp(h))  # accepts singular values directly
    assert energy_share(m, 1) == pytest.approx(9.0 / 10.0)
    assert energy_share(m, 2) == pytest.approx(1.0)


def test_norm_popularity_spearman():
    emb = np.array([[1.0, 0], [0, 2.0], [3.0, 0], [0, 4.0]])
    assert norm_popularity_spearman(emb, [1, 5, 7, 9]) == pytest.approx(1.0)
    assert norm_popularity_spearman(emb, [9, 7, 5, 1]) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        norm_popularity_spearman(emb, [1, 2])


def test_spectrum_report_keys():
    rng = np.random.default_rng(1)
    rep = spectrum_report(rng.normal(size=(20, 4)), rng.normal(size=(9, 4)), np.arange(9))
    for k in ("user_erank", "item_erank", "item_energy_top1", "item_norm_pop_spearman", "item_singular_values"):
        assert k in rep
    assert len(rep["item_singular_values"]) == 4 and rep["item_dim"] == 4
    assert spectrum_report(None, np.eye(3), None)["item_erank"] == pytest.approx(3.0)


DIMS = 2.0 ** np.arange(2, 11)  # 4 .. 1024


def test_classify_logarithmic():
    assert classify_curve(DIMS, 0.02 + 0.01 * np.log2(DIMS)) == "logarithmic"


def test_classify_saturating():
    assert classify_curve(DIMS, 0.1 * (1 - np.exp(-DIMS / 16))) == "saturating"
    slight_decline = 0.1 * (1 - np.exp(-DIMS / 16)) - 0.0002 * np.log2(DIMS)  # late decline within tol
    assert classify_curve(DIMS, slight_decline) == "saturating"
    assert classify_curve(DIMS, np.full(len(DIMS), 0.05)) == "saturating"


def test_classify_double_peak():
    x = np.log2(DIMS)
    curve = 0.05 + 0.03 * np.exp(-((x - 4) ** 2) / 1.0) + 0.035 * np.exp(-((x - 9) ** 2) / 1.0)
    assert classify_curve(DIMS, curve) == "double-peak"
    assert classify_curve(DIMS[::-1], curve[::-1]) == "double-peak"  # order of points does not matter
    tiny_wiggle = 0.02 + 0.01 * x + 0.0002 * (x % 2)  # wiggles below tol are not peaks
    assert classify_curve(DIMS, tiny_wiggle) == "logarithmic"
    # the same dip, but within seed noise: not a double peak once the standard errors are given
    assert classify_curve(DIMS, curve, sem=np.full(len(DIMS), 0.001)) == "double-peak"
    assert classify_curve(DIMS, curve, sem=np.full(len(DIMS), 0.02)) != "double-peak"
    with pytest.raises(ValueError):
        classify_curve([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError):
        classify_curve(DIMS, curve, sem=[0.1])


def test_classify_collapse():
    peak_then_decline = 0.1 - 0.004 * (np.log2(DIMS) - 5) ** 2  # one peak at 32, then a large-d drop
    assert classify_curve(DIMS, peak_then_decline) == "collapse"
    assert classify_curve(DIMS[::-1], peak_then_decline[::-1]) == "collapse"
    # the same drop (0.1 -> 0.064 at the last dim) within seed noise: no label beyond saturating
    drop = 0.1 - 0.004 * np.clip(np.log2(DIMS) - 7, 0, None) ** 2
    assert classify_curve(DIMS, drop, sem=np.full(len(DIMS), 0.001), n_seeds=3) == "collapse"
    assert classify_curve(DIMS, drop, sem=np.full(len(DIMS), 0.01), n_seeds=3) == "saturating"
    # a drop followed by a second rise beyond noise is a double peak, not a collapse
    x = np.log2(DIMS)
    rise_again = 0.1 - 0.03 * np.exp(-((x - 7) ** 2) / 0.5)
    assert classify_curve(DIMS, rise_again) == "double-peak"


def test_t_threshold_depends_on_seeds():
    # t quantiles, two-sided 95%: df 2 -> 4.303, df 4 -> 2.776; without counts the fixed z = 2
    assert noise_threshold(0.003, 0.004, 3, 3) == pytest.approx(4.3027 * 0.005, rel=1e-3)
    assert noise_threshold(0.003, 0.004, 5, 9) == pytest.approx(2.7764 * 0.005, rel=1e-3)
    assert noise_threshold(0.003, 0.004, None, None) == pytest.approx(2 * 0.005)
    with pytest.raises(ValueError):
        noise_threshold(0.01, 0.01, 1, 3)
    # a dip of 0.024 with sem 0.004 at every point: beyond z = 2 (0.0113) and beyond t for 10 seeds
    # (2.262 * 0.00566 = 0.0128), within t for 3 seeds (4.303 * 0.00566 = 0.0243)
    x = np.log2(DIMS)
    curve = 0.1 - 0.024 * np.exp(-((x - 6) ** 2) / 0.3)
    sem = np.full(len(DIMS), 0.004)
    assert classify_curve(DIMS, curve, sem=sem) == "double-peak"
    assert classify_curve(DIMS, curve, sem=sem, n_seeds=10) == "double-peak"
    assert classify_curve(DIMS, curve, sem=sem, n_seeds=3) != "double-peak"
    per_point = [3] * len(DIMS)
    assert classify_curve(DIMS, curve, sem=sem, n_seeds=per_point) == classify_curve(DIMS, curve, sem=sem, n_seeds=3)
    with pytest.raises(ValueError):
        classify_curve(DIMS, curve, sem=sem, n_seeds=[3, 3])
