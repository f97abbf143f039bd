"""Shared fixtures: a small synthetic catalogue, configs and a throwaway cache/output folder."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("GENREC_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache root unless it sets one (no test touches ~/.cache/genrec)."""
    if "GENREC_TEST_SHARED_CACHE" not in os.environ:
        monkeypatch.setenv("GENREC_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield


@pytest.fixture
def make_cfg(tmp_path):
    """make_cfg('run.family=cf', ...) -> a Config on the synthetic data with outputs under tmp_path."""
    from genrec.config import load_config

    def _make(*overrides, files=()):
        base = ["data.source=synthetic", f"run.output_dir={tmp_path / 'runs'}", "train.progress=false",
                f"run.leaderboard={tmp_path / 'lb.csv'}"]
        return load_config(list(files), base + list(overrides))

    return _make


@pytest.fixture
def synthetic(make_cfg):
    """(cfg, data, split) for the default synthetic catalogue."""
    from genrec.data import load_data, split_data

    cfg = make_cfg()
    data = load_data(cfg.data)
    return cfg, data, split_data(data, cfg.data)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matmuls: one intra-op thread is ~10x faster than two on a shared, busy 2-core machine
    (modules opt in with pytestmark = pytest.mark.usefixtures("one_thread"))."""
    from genrec.runtime import cpu_threads

    with cpu_threads(1):
        yield
