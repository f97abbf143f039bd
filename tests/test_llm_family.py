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


@pytest.mark.parametrize("variant,mode", [("plain", "single"), ("cf_inject", "single"), ("plain", "packed"),
                                          ("cf_inject", "packed")])
@pytest.mark.slow
def test_family_runs_and_outputs_valid_items(make_cfg, tiny_folder, variant, mode):
    cfg, res = _run(make_cfg, tiny_folder, f"llm.variant={variant}", f"llm.train_mode={mode}")
    m, ex, p = res["metrics"], res["extra"], res["params"]
    assert ex["train_mode"] == mode and ex["prompt_layout"] == ("list" if mode == "packed" else "template")
    if mode == "packed":  # windows of history_items + 1 = 4 titles: up to 3 targets per prompt
        assert ex["train_examples"] < ex["train_targets"] <= 3 * ex["train_examples"]
    else:
        assert ex["train_examples"] == ex["train_targets"]
    assert m["users_evaluated"] == 16 and m["invalid_rate"] == 0.0
    assert 0.0 <= m["recall@5"] <= m["recall@10"] <= 1.0
    assert 0 < p["params_trainable"] < p["params_total"]
    assert ex["variant"] == variant and ex["steps"] == 4 and ex["tokens_per_s"] > 0
    assert len(ex["history"]) == 2 and "valid_recall@10" in ex["history"][0]
    assert res["train_tokens"] == ex["train_tokens"] > 0 and res["train_flops"] > 0  # genrec.compute
    assert ex["n_layers"] > 0 and ex["d_attn"] > 0 and 1 <= ex["context"] <= ex["train_tokens"]
    if variant == "cf_inject":
        from genrec.models.cf.family import mf_bpr_settings

        assert ex["inject_cf"] == mf_bpr_settings(8, 2, cfg.run.seed)
    from genrec.models.llm.model import LLMRec

    rec, _ = LLMRec.load_adapter(ex["adapter"])
    assert (rec.projector is not None) == (variant == "cf_inject")


@pytest.mark.slow
def test_rerun_resumes_finished_training(make_cfg, tiny_folder):
    _, first = _run(make_cfg, tiny_folder)
    _, again = _run(make_cfg, tiny_folder)
    assert again["run_id"] == first["run_id"]
    # nothing retrained (the finished checkpoint was reused); the totals are rebuilt from the seeded batches
    assert again["extra"]["tokens_per_s"] is None and again["extra"]["resumed_from_epoch"] > 0
    assert again["train_tokens"] == first["train_tokens"] > 0 and again["train_flops"] == first["train_flops"]
    assert again["metrics"]["recall@10"] == pytest.approx(first["metrics"]["recall@10"])


def test_token_count_by_hand():
    from transformers import LlamaConfig

    from genrec.models.llm.family import batch_stream, compute_counts

    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])

    def collate(rows):  # a fixed batch: 3 + 2 real tokens, 1 + 1 targets
        labels = np.where(mask == 1, 5, -100)
        labels[:, 0] = -100
        labels[0, 1] = -100
        return {"input_ids": mask * 7, "attention_mask": mask, "position_ids": mask.cumsum(1), "labels": labels,
                "soft_items": -np.ones_like(mask)}

    counter = {"tokens": 0, "targets": 0, "attended": 0}
    batches = list(batch_stream(collate, 2, 2, 0, 0, False, counter)(0))
    assert len(batches) == 1 and "soft_items" not in batches[0]
    assert counter == {"tokens": 5, "targets": 2, "attended": (1 + 2 + 3) + (1 + 2)}  # causal attention
    config = LlamaConfig(hidden_size=64, num_attention_heads=4, head_dim=8, num_hidden_layers=3)
    assert compute_counts(config, counter) == {"train_tokens": 5, "n_layers": 3, "d_attn": 32, "context": 1.8}


def test_batch_stream_is_positional_so_short_epochs_repeat_one_long_one():
    """llm.steps_per_epoch: 10 epochs of 15 steps draw exactly the batches of one epoch of 150 (the stream is
    positional over seeded permutations), so splitting a run into short epochs only adds checkpoints."""
    from genrec.models.llm.family import batch_stream

    def rows(spe: int, epochs: int) -> list:
        counter = {"tokens": 0, "targets": 0, "attended": 0}
        collate = lambda b: {"input_ids": np.asarray(b)[:, None], "attention_mask": np.ones((len(b), 1), int),  # noqa: E731
                             "labels": np.ones((len(b), 1), int), "soft_items": np.zeros((len(b), 1), int)}
        make = batch_stream(collate, 37, 8, spe, 3, False, counter)
        return [int(i) for e in range(epochs) for b in make(e) for i in b["input_ids"][:, 0]]

    one = rows(150, 1)
    assert len(one) == 1200 and rows(15, 10) == one and sorted(one[:37]) == list(range(37))


def test_k_above_beams_is_a_config_error(make_cfg, tiny_folder):
    from genrec.pipeline import run_point

    with pytest.raises(ConfigError, match="num_beams"):
        run_point(make_cfg(*SMALL, f"llm.model={tiny_folder}", "eval.ks=[5,10,20]"))
    torch.set_grad_enabled(True)


def test_llm_dtype_auto_follows_resolve_precision(monkeypatch):
    import genrec.models.llm.model as llm_model

    cpu = torch.device("cpu")
    monkeypatch.setattr(llm_model, "resolve_precision", lambda requested, device: "no")
    assert llm_model.weight_dtype("auto", cpu) == torch.float32
    monkeypatch.setattr(llm_model, "resolve_precision", lambda requested, device: "bf16")
    assert llm_model.weight_dtype("auto", cpu) == torch.bfloat16
    assert llm_model.weight_dtype("float16", cpu) == torch.float16
