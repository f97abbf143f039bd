"""Scaling-law fits: recover known parameters, R^2 ~ 1, bootstrap intervals that cover the truth."""
import numpy as np
import pytest

from genrec.errors import ConfigError
from genrec.scaling.fit import fit_joint, fit_power_law

N = np.array([1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8])
TRUE = {"R0": 0.3, "A": 20.0, "a": 0.4}


def _law(n, p):
    return p["R0"] - p["A"] * n ** -p["a"]


def test_power_law_recovers_noiseless_parameters():
    fit = fit_power_law(N, _law(N, TRUE), n_boot=20)
    for k, v in TRUE.items():
        assert fit.params[k] == pytest.approx(v, rel=1e-3), k
    assert fit.r2 == pytest.approx(1.0, abs=1e-8)
    assert np.allclose(fit.predict(N), _law(N, TRUE), atol=1e-6)
    assert "R^2=1.0000" in fit.summary() and fit.n_points == len(N)


def test_power_law_bootstrap_interval_contains_truth():
    rng = np.random.default_rng(0)
    n = np.repeat(N, 3)
    y = _law(n, TRUE) + rng.normal(0, 0.002, len(n))
    fit = fit_power_law(n, y, n_boot=200, seed=1)
    assert fit.r2 > 0.99 and fit.n_boot > 150
    for k, v in TRUE.items():
        lo, hi = fit.ci[k]
        assert lo <= v <= hi, (k, lo, v, hi)
        assert lo <= fit.params[k] <= hi


def test_huber_resists_one_outlier():
    y = _law(N, TRUE)
    y[2] += 0.05  # one wild point
    fit = fit_power_law(N, y, n_boot=0, delta=0.001)
    assert fit.params["R0"] == pytest.approx(TRUE["R0"], rel=0.02)
    assert fit.params["a"] == pytest.approx(TRUE["a"], rel=0.1)


def test_joint_form_recovers_parameters():
    rs, llm, qt = (np.array(v, dtype=float) for v in ([1e5, 3e5, 1e6, 3e6, 1e7], [0, 1e8, 1e9], [1e4, 1e5]))
    g = np.array(np.meshgrid(rs, llm, qt, indexing="ij")).reshape(3, -1)
    tp = {"R0": 0.35, "A": 50.0, "a": 0.4, "g1": 0.05, "g2": 0.5, "B": 2.0, "b": 0.3}
    n_eff = g[0] + tp["g1"] * g[1] + tp["g2"] * g[2]
    y = tp["R0"] - tp["A"] * n_eff ** -tp["a"] - tp["B"] * g[0] ** -tp["b"]
    fit = fit_joint(y, g[0], g[1], g[2], n_boot=20)
    assert fit.r2 == pytest.approx(1.0, abs=1e-6)
    for k, v in tp.items():
        assert fit.params[k] == pytest.approx(v, rel=0.02), k
        lo, hi = fit.ci[k]
        assert lo <= fit.params[k] * 1.0001 and fit.params[k] <= hi * 1.0001


def test_too_few_sizes_is_a_clear_error():
    with pytest.raises(ConfigError, match="at least 3 distinct sizes"):
        fit_power_law([1e5, 1e5, 1e6], [0.1, 0.1, 0.2])
    with pytest.raises(ConfigError, match="fit form"):
        from genrec.scaling.fit import fit_law

        fit_law([1, 2, 3], [1, 2, 3], form="cubic")
