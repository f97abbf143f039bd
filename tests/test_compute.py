"""genrec.compute: the analytic training-FLOP count against values worked out by hand, the CF family's
counts, and the row's train_tokens / train_flops columns."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.compute import cf_flops, graph_flops, kaplan_flops, scoring_flops, sequence_flops, train_compute
from genrec.config import TrainConfig
from genrec.data.dataset import EvalSet, Split
from genrec.models.cf.config import CFConfig
from genrec.models.cf.family import build_model
from genrec.runtime import count_params

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_formulas_by_hand():
    # 6 x 1000 params x 10 tokens
    assert kaplan_flops(1000, 10) == 60_000
    # + attention: 6 x 2 layers x 5 context x 8 d_attn = 480 per token -> (6000 + 480) x 10
    assert kaplan_flops(1000, 10, n_layers=2, context=5, d_attn=8) == 64_800
    assert sequence_flops(1000, 10, 2, 5, 8) == 64_800
    # 4 examples x 3 scored items x 6 x dim 2
    assert scoring_flops(4, 3, 2) == 144
    # 2 steps x 8 x 10 edges x dim 4 x 3 layers (x 1 view); SGL's 3 views triple it
    assert graph_flops(2, 10, 4, 3) == 1920
    assert graph_flops(2, 10, 4, 3, views=3) == 5760
    # MF: no non-embedding params, 6 pairs x (1 positive + 1 negative) x 6 x dim 4
    assert cf_flops(0, 6, scored_items=2, score_dim=4) == 288


def test_train_compute_reads_extra_keys():
    assert train_compute({}, {}) == {"train_tokens": None, "train_flops": None}
    assert train_compute({"train_examples": 0}, {"params_non_embedding": 0}) == {"train_tokens": 0,
                                                                                  "train_flops": 0.0}
    seq = {"train_tokens": 10, "n_layers": 2, "context": 5, "d_attn": 8}
    assert train_compute(seq, {"params_non_embedding": 1000}) == {"train_tokens": 10, "train_flops": 64_800.0}
    cf = {"train_examples": 6, "scored_items": 2, "score_dim": 4, "graph_steps": 2, "graph_edges": 10,
          "graph_dim": 4, "graph_layers": 3, "graph_views": 1}
    assert train_compute(cf, {"params_non_embedding": 0})["train_flops"] == 288 + 1920
    # a train_examples that is not the CF contract (no scored_items, e.g. a count of the data) is not counted
    assert train_compute({"train_examples": 1836}, {"params_non_embedding": 5})["train_flops"] is None
    assert train_compute({"train_tokens": None, "train_examples": 0}, {})["train_tokens"] is None
    # train_tokens wins over train_examples; non-numbers count as absent
    assert train_compute({"train_tokens": 3, "train_examples": 99, "context": "x"},
                         {"params_non_embedding": 1})["train_tokens"] == 3


def _split() -> Split:
    train = [np.array([0, 1, 2]), np.array([1, 2]), np.array([3])]
    users = np.arange(3)
    ev = EvalSet(users, [np.array([0])] * 3, np.array([3, 0, 1]))
    return Split("loo", train, ev, ev)


def _fit(name: str, cfg: CFConfig, tmp_path, batch_size: int = 4):
    model = build_model(name, cfg, 3, 4, max_len=5, seed=0)
    tc = TrainConfig(epochs=1, batch_size=batch_size, patience=0, checkpoint_every=0, progress=False,
                     mixed_precision="no")
    model.fit(_split(), tc, tmp_path, device=torch.device("cpu"), validate=False)
    return model


def test_mf_counts(tmp_path):
    model = _fit("mf_bpr", CFConfig(dim=4, loss="bpr", num_negatives=1), tmp_path)
    c = model.train_counts
    assert c["train_examples"] == 6 and c["scored_items"] == 2 and c["score_dim"] == 4 and c["train_batches"] == 2
    assert train_compute(c, count_params(model)) == {"train_tokens": 6, "train_flops": 288.0}


def test_sasrec_counts(tmp_path):
    cfg = CFConfig(dim=8, layers=1, heads=1, loss="softmax", dropout=0.0)
    model = _fit("sasrec", cfg, tmp_path)
    # blocks: 2 LayerNorms 2x16, qkv 8x24+24, proj 8x8+8, feed-forward 2 x (8x8+8); final LayerNorm 16
    assert count_params(model)["params_non_embedding"] == 32 + 216 + 72 + 144 + 16 == 480
    c = model.train_counts
    # sequences of 3, 2 and 1 items: 2 + 1 predicted positions, mean input length 1.5
    assert (c["train_examples"], c["context"], c["n_layers"], c["d_attn"], c["scored_items"]) == (3, 1.5, 1, 8, 4)
    by_hand = 3 * (6 * 480 + 6 * 1 * 1.5 * 8) + 6 * 8 * 4 * 3
    assert train_compute(c, count_params(model))["train_flops"] == pytest.approx(by_hand)


def test_lightgcn_and_neumf_counts(tmp_path):
    g = _fit("lightgcn", CFConfig(dim=4, layers=2, loss="bpr"), tmp_path / "g").train_counts
    assert (g["graph_steps"], g["graph_edges"], g["graph_layers"], g["graph_views"]) == (2, 6, 2, 1)
    n = _fit("neumf", CFConfig(dim=4, loss="bpr", num_negatives=3), tmp_path / "n").train_counts
    assert n["train_examples"] == 6 * 4 and n["scored_items"] == 1  # every scored pair runs the MLP


def test_rows_record_compute(make_cfg):
    from genrec.pipeline import run_point
    from genrec.scaling.leaderboard import make_row

    cfg = make_cfg("run.family=baseline", "run.model=popularity")
    res = run_point(cfg)
    assert (res["train_tokens"], res["train_flops"]) == (0, 0.0)
    row = make_row(cfg, res)
    assert (row["train_tokens"], row["train_flops"]) == (0, 0.0)
    cfg = make_cfg("run.family=cf", "run.model=mf_bpr", "cf.dim=8", "train.epochs=1", "train.batch_size=512",
                   "train.mixed_precision=no")
    res = run_point(cfg)
    assert res["extra"]["train_examples"] == res["train_tokens"] > 0
    assert res["train_flops"] == 6 * 8 * 2 * res["train_tokens"]
    assert make_row(cfg, res)["train_flops"] == res["train_flops"]


def test_sequence_model_counts_feed_train_compute():
    """The SID / LLM families' keys (genrec.models.sid.data.TokenCount, genrec.models.llm.family.compute_counts):
    train_tokens with the attention term, no CF keys."""
    from types import SimpleNamespace

    from genrec.models.sid.data import TokenCount

    count = TokenCount(SimpleNamespace(n_levels=3, user_tokens=0, arch="decoder_only", num_layers=2,
                                       num_decoder_layers=0, num_heads=4, d_kv=8))
    count.add((torch.tensor([0]), torch.tensor([[-1, 1, 2]])))  # BOS + 2 items x 3 tokens: 7 positions
    extra = count.extra()
    assert extra == {"train_tokens": 7, "n_layers": 2, "context": 4.0, "d_attn": 32}  # (1 + ... + 7) / 7
    out = train_compute(extra, {"params_non_embedding": 1000})
    assert out == {"train_tokens": 7, "train_flops": 6 * 1000 * 7 + 6 * 2 * 4.0 * 32 * 7}


def test_tune_cpu_malloc_sets_thresholds_once_and_can_be_turned_off():
    import subprocess
    import sys

    code = ("import genrec.runtime as r; a = r.tune_cpu_malloc(); b = r.tune_cpu_malloc(); "
            "print(a, b, r._MALLOC_TUNED)")
    env_on = {"PATH": "/usr/bin:/bin"}
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env_on, check=True)
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env_on, "GENREC_TUNE_MALLOC": "0"})
    assert off.stdout.split() == ["False", "False", "False"]
    if sys.platform.startswith("linux"):  # glibc: both calls report the thresholds as set
        assert on.stdout.split() == ["True", "True", "True"]
