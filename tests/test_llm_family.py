"""LLM family end to end (`run_point`) on a small synthetic catalogue with a tiny random Llama."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.errors import ConfigError

SMALL = ["data.source=synthetic", "data.n_users=40", "data.n_items=24", "data.seq_len=8", "run.family=llm",
         "run.model=lora", "eval.ks=[5,10]", "eval.max_users=16", "decode.valid_users=8", "llm.history_items=3",
         "llm.lora_rank=4", "decode.num_beams=10", "decode.batch_size=16", "train.batch_size=16",
         "train.epochs=2", "llm.steps_per_epoch=2", "train.lr=5e-3", "llm.cf_dim=8", "llm.cf_hidden=16",
         "llm.cf_epochs=2"]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from genrec.config import load_config
    from genrec.data import load_data
    from genrec.models.llm.tiny import make_tiny_llm, prompt_words

    data = load_data(load_config([], SMALL).data)
    return make_tiny_llm(tmp_path_factory.mktemp("tiny"), list(data.item_titles) + prompt_words())


def _run(make_cfg, tiny_folder, *extra):
    from genrec.pipeline import run_point

    cfg = make_cfg(*SMALL, f"llm.model={tiny_folder}", *extra)
    return cfg, run_point(cfg)


@pytest.mark.parametrize("variant", ["plain", "cf_inject"])
def test_family_runs_and_outputs_valid_items(make_cfg, tiny_folder, variant):
    cfg, res = _run(make_cfg, tiny_folder, f"llm.variant={variant}")
    m, ex, p = res["metrics"], res["extra"], res["params"]
    assert m["users_evaluated"] == 16 and m["invalid_rate"] == 0.0
    assert 0.0 <= m["recall@5"] <= m["recall@10"] <= 1.0
    assert 0 < p["params_trainable"] < p["params_total"]
    assert ex["variant"] == variant and ex["steps"] == 4 and ex["tokens_per_s"] > 0
    assert len(ex["history"]) == 2 and "valid_recall@10" in ex["history"][0]
    if variant == "cf_inject":
        assert ex["cf_source"]
    from genrec.models.llm.model import LLMRec

    rec, _ = LLMRec.load_adapter(ex["adapter"])
    assert (rec.projector is not None) == (variant == "cf_inject")


def test_rerun_resumes_finished_training(make_cfg, tiny_folder):
    _, first = _run(make_cfg, tiny_folder)
    _, again = _run(make_cfg, tiny_folder)
    assert again["run_id"] == first["run_id"]
    assert again["extra"]["train_tokens"] is None  # nothing retrained: the finished checkpoint was reused
    assert again["extra"]["tokens_per_s"] is None and again["extra"]["resumed_from_epoch"] > 0
    assert again["metrics"]["recall@10"] == pytest.approx(first["metrics"]["recall@10"])


def test_k_above_beams_is_a_config_error(make_cfg, tiny_folder):
    from genrec.pipeline import run_point

    with pytest.raises(ConfigError, match="num_beams"):
        run_point(make_cfg(*SMALL, f"llm.model={tiny_folder}", "eval.ks=[5,10,20]"))
    torch.set_grad_enabled(True)
