"""Scaling-law fits: recover known parameters, calibrated intervals, and 'not identified' when the data are flat."""
import numpy as np
import pytest

import genrec.scaling.fit as fit_mod
from genrec.errors import ConfigError
from genrec.scaling.fit import fit_joint, fit_law, fit_power_law

N = np.array([1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8])
TRUE = {"R0": 0.3, "A": 20.0, "a": 0.4}


def _law(n, p):
    return p["R0"] - p["A"] * n ** -p["a"]


def test_power_law_recovers_noiseless_parameters():
    fit = fit_power_law(N, _law(N, TRUE), n_boot=20)
    for k, v in TRUE.items():
        assert fit.params[k] == pytest.approx(v, rel=1e-3), k
    assert fit.identified and not fit.not_identified
    assert fit.r2 == pytest.approx(1.0, abs=1e-8)
    assert np.allclose(fit.predict(N), _law(N, TRUE), atol=1e-6)
    assert "R^2=1.0000" in fit.summary() and fit.n_points == len(N)


def test_power_law_intervals_contain_truth():
    rng = np.random.default_rng(0)
    n = np.repeat(N, 3)
    y = _law(n, TRUE) + rng.normal(0, 0.002, len(n))
    fit = fit_power_law(n, y, n_boot=200, seed=1)
    assert fit.r2 > 0.99 and fit.n_boot > 150 and fit.identified
    for k, v in TRUE.items():
        lo, hi = fit.ci[k]
        assert lo <= v <= hi, (k, lo, v, hi)
        assert lo <= fit.params[k] <= hi
    lo, hi = fit.profile["a"]
    assert lo <= TRUE["a"] <= hi and hi - lo < 0.1
    # the Huber threshold sits on the residual scale (noise sd 0.002), not on the metric's magnitude
    assert 0.001 < fit.scale < 0.004
    assert fit.to_dict()["huber_threshold"] == pytest.approx(1.345 * fit.scale)


def test_interval_coverage_over_synthetic_datasets():
    """The 90% profile interval of the exponent covers the truth in most of 24 noisy datasets."""
    n = np.repeat(N, 2)
    covered = []
    for seed in range(24):
        y = _law(n, TRUE) + np.random.default_rng(100 + seed).normal(0, 0.004, len(n))
        fit = fit_power_law(n, y, n_boot=0, ci=0.9)
        assert fit.identified, fit.summary()
        lo, hi = fit.profile["a"]
        covered.append(lo <= TRUE["a"] <= hi)
    assert 0.75 <= np.mean(covered) <= 1.0, np.mean(covered)


def test_noise_only_data_is_not_identified():
    n = np.repeat(N, 3)
    y = np.random.default_rng(1).normal(0.1, 0.01, len(n))
    fit = fit_power_law(n, y, n_boot=50)
    assert not fit.identified
    assert "a" in fit.not_identified and "profile flat" in fit.not_identified["a"]
    assert "a" not in fit.ci and "NOT IDENTIFIED" in fit.summary()
    d = fit.to_dict()
    assert d["identified"] is False and "a" in d["not_identified"]


def test_flat_exponent_profile_is_not_identified():
    """Four sizes x two seeds, rising then falling (like the ML-1M recommender-size sweep)."""
    n = np.repeat([2.9e4, 2.3e5, 7.8e5, 1.8e6], 2)
    y = np.array([0.006, 0.002, 0.013, 0.027, 0.03, 0.023, 0.016, 0.016])
    fit = fit_power_law(n, y, n_boot=50)
    assert not fit.identified and "a" in fit.not_identified
    assert "search edge" in fit.not_identified["a"]


def test_bootstrap_replicates_start_from_a_grid(monkeypatch):
    calls = []
    orig = fit_mod._minimise

    def spy(d, theta0, w=None, fixed=None):
        calls.append((len(theta0), w is not None))
        return orig(d, theta0, w, fixed)

    monkeypatch.setattr(fit_mod, "_minimise", spy)
    fit = fit_power_law(N, _law(N, TRUE), n_boot=10)
    n_starts = len(fit_mod._starts("power", _law(N, TRUE))) + 1
    assert (fit.n_boot * n_starts, True) in calls


def test_huber_resists_one_outlier():
    y = _law(N, TRUE)
    y[2] += 0.05  # one wild point
    fit = fit_power_law(N, y, n_boot=0)
    assert fit.params["R0"] == pytest.approx(TRUE["R0"], rel=0.02)
    assert fit.params["a"] == pytest.approx(TRUE["a"], rel=0.1)


def test_joint_form_recovers_parameters():
    rs, llm, qt = (np.array(v, dtype=float) for v in ([1e5, 3e5, 1e6, 3e6, 1e7], [0, 1e8, 1e9], [1e4, 1e5]))
    g = np.array(np.meshgrid(rs, llm, qt, indexing="ij")).reshape(3, -1)
    tp = {"R0": 0.35, "A": 50.0, "a": 0.4, "g1": 0.05, "g2": 0.5, "B": 2.0, "b": 0.3}
    n_eff = g[0] + tp["g1"] * g[1] + tp["g2"] * g[2]
    y = tp["R0"] - tp["A"] * n_eff ** -tp["a"] - tp["B"] * g[0] ** -tp["b"]
    fit = fit_joint(y, g[0], g[1], g[2], n_boot=20)
    assert fit.r2 == pytest.approx(1.0, abs=1e-6) and fit.identified
    for k, v in tp.items():
        assert fit.params[k] == pytest.approx(v, rel=0.02), k
        lo, hi = fit.ci[k]
        assert lo <= fit.params[k] * 1.0001 and fit.params[k] <= hi * 1.0001


def test_joint_form_without_llm_or_quantizer_variation_is_not_identified():
    rs = np.repeat([1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8], 2)
    y = 0.35 - 50.0 * rs ** -0.4 - 2.0 * rs ** -0.3
    fit = fit_joint(y, rs, np.zeros_like(rs), np.zeros_like(rs), n_boot=0)
    assert {"g1", "g2"} <= set(fit.not_identified)


def test_too_few_sizes_is_a_clear_error():
    with pytest.raises(ConfigError, match="at least 3 distinct sizes"):
        fit_power_law([1e5, 1e5, 1e6], [0.1, 0.1, 0.2])
    with pytest.raises(ConfigError, match="fit form"):
        fit_law([1, 2, 3], [1, 2, 3], form="cubic")
