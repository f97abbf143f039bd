"""LLM family, sid_tokens variant: SID codes as new vocabulary tokens (only their rows train, plus LoRA)."""
from __future__ import annotations

import numpy as np
import pytest

SMALL = ["data.source=synthetic", "data.n_users=40", "data.n_items=24", "data.seq_len=8", "run.family=llm",
         "run.model=lora", "eval.ks=[5,10]", "eval.max_users=16", "decode.valid_users=8", "llm.history_items=3",
         "llm.lora_rank=4", "decode.num_beams=10", "train.batch_size=16", "train.epochs=1", "llm.steps_per_epoch=3",
         "train.lr=5e-3"]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _run(make_cfg, tiny_folder, *extra):
    from genrec.pipeline import run_point

    cfg = make_cfg(*SMALL, f"llm.model={tiny_folder}", *extra)
    return cfg, run_point(cfg)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from genrec.config import load_config
    from genrec.data import load_data
    from genrec.models.llm.tiny import make_tiny_llm, prompt_words

    data = load_data(load_config([], SMALL).data)
    return make_tiny_llm(tmp_path_factory.mktemp("tiny"), list(data.item_titles) + prompt_words())


@pytest.mark.slow
@pytest.mark.parametrize("mode,history", [("single", "both"), ("packed", "sid")])
def test_sid_tokens_variant(make_cfg, tiny_folder, monkeypatch, mode, history):
    import genrec.encoders

    def fake_encode(data, enc_cfg, return_info=False, progress=True):
        emb = np.random.default_rng(0).normal(size=(data.n_items, 8)).astype(np.float32)
        return (emb, {"model_id": "fake", "revision": "0"}) if return_info else emb

    monkeypatch.setattr(genrec.encoders, "encode_items", fake_encode)
    cfg, res = _run(make_cfg, tiny_folder, "llm.variant=sid_tokens", "sid.quantizer=rq_kmeans", "sid.levels=2",
                    "sid.codebook_size=4", f"llm.train_mode={mode}", f"llm.sid_history={history}")
    assert res["metrics"]["invalid_rate"] == 0.0
    ex = res["extra"]
    assert ex["train_mode"] == mode and (ex["train_targets"] > ex["train_examples"]) == (mode == "packed")
    assert ex["sid_levels"] == 3  # 2 levels + the disambiguation level
    # only LoRA and the new token rows train: LoRA (q,o: 32->32, k,v: 32->16; rank 4; 2 layers) + new rows x 32
    lora = 2 * (2 * 4 * (32 + 32) + 2 * 4 * (32 + 16))
    assert res["params"]["params_trainable"] == lora + sum(ex["sid_vocab"]) * 32
    from genrec.models.llm.model import LLMRec

    rec, tok = LLMRec.load_adapter(ex["adapter"])
    assert any(t.startswith("<sid_0_") for t in tok.get_vocab())
    assert rec.vocab_size == len(tok)


def test_sid_tokens_packed_needs_history_as_target(make_cfg, tiny_folder):
    from genrec.errors import ConfigError
    from genrec.pipeline import run_point

    with pytest.raises(ConfigError, match="sid_history"):
        run_point(make_cfg(*SMALL, f"llm.model={tiny_folder}", "llm.variant=sid_tokens", "llm.train_mode=packed"))
