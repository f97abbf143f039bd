"""Packed LLM training (llm.train_mode=packed): windows, masks, and loss equal to the one-target path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.errors import ConfigError, DataError
from genrec.models.llm.config import LLMConfig
from genrec.models.llm.model import CFProjector, LLMRec, load_base, wrap_lora
from genrec.models.llm.prompts import build_codec, history_matrix, packed_examples
from genrec.models.llm.recommender import LLMRecommender, exhaustive_scores
from genrec.models.llm.tiny import make_tiny_llm, prompt_words

COLOURS = ["red", "green", "blue"]
KINDS = ["lamp", "kettle"]
TITLES = [f"{c} {k} number {i}" for i, (c, k) in enumerate((c, k) for c in COLOURS for k in KINDS for _ in range(2))]
PREFIX = "A user watched, in order:"

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_llm(tmp_path_factory.mktemp("tiny"), TITLES + prompt_words())


def _setup(folder, soft: bool = False, **kw):
    torch.manual_seed(0)
    cfg = LLMConfig(model=str(folder), lora_rank=4, lora_dropout=0.0, history_items=3, train_mode="packed", **kw)
    tok, base = load_base(cfg, torch.device("cpu"))
    proj = None
    if soft:
        cf = np.random.default_rng(0).normal(size=(len(TITLES), 6)).astype(np.float32)
        proj = CFProjector(cf, base.get_input_embeddings().weight.shape[1], 8, 1.0)
    rec = LLMRec(wrap_lora(base, cfg), proj)
    with torch.no_grad():  # non-zero LoRA B so the adapter matters
        for n, p in rec.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    return cfg, tok, rec.eval(), build_codec(tok, TITLES, cfg, soft_token=soft)


def test_packed_windows_cover_every_target_once():
    train = [np.arange(10), np.array([20, 21]), np.array([30]), np.arange(40, 45)]
    win, n_t, user = packed_examples(train, 3, min_context=1)
    assert win.shape[1] == 4 and (n_t >= 1).all() and (n_t <= 3).all()
    seen = []
    for w, k, u in zip(win, n_t, user):
        items = w[w >= 0]
        seq = train[u]
        start = int(np.flatnonzero(seq == items[0])[0])
        assert items.tolist() == seq[start: start + len(items)].tolist()  # consecutive titles of the user
        assert len(items) - k >= 1  # at least min_context titles before the first target
        seen += [(int(u), int(x)) for x in items[len(items) - k:]]
    want = [(u, int(x)) for u, s in enumerate(train) for x in s[1:]]
    assert sorted(seen) == sorted(want)  # every position after the first is a target exactly once
    win, n_t, user = packed_examples(train, 3, min_context=2, targets_per_user=2)
    assert sorted((int(u), int(x)) for w, k, u in zip(win, n_t, user) for x in w[w >= 0][-k:]) == \
        [(0, 8), (0, 9), (3, 43), (3, 44)]
    assert win[0].tolist() == [6, 7, 8, 9] and n_t[0] == 2
    with pytest.raises(ConfigError, match="min_context"):
        packed_examples(train, 3, min_context=4)
    with pytest.raises(DataError, match="min_context"):
        packed_examples([np.array([1])], 3, min_context=1)


def test_packed_batch_matches_text_and_masks_only_targets(tiny):
    cfg, tok, rec, codec = _setup(tiny)
    assert codec.layout == "list" and codec.packable and len(codec.suffix) == 0
    win = np.array([[0, 5, 7, 2], [-1, -1, 3, 11]])
    n_t = np.array([2, 1])
    b = codec.collate_packed(win, n_t)
    ids = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    for r in range(2):
        items = win[r][win[r] >= 0]
        pieces = [ids(" " + TITLES[i] + " ,") for i in items]
        want = ids(PREFIX) + sum(pieces, [])
        m = b["attention_mask"][r].astype(bool)
        assert b["input_ids"][r][m].tolist() == want
        n_ctx = len(items) - n_t[r]
        ctx_len = len(ids(PREFIX)) + sum(len(p) for p in pieces[:n_ctx])
        lab = b["labels"][r][m]
        assert (lab[:ctx_len] == -100).all() and lab[ctx_len:].tolist() == want[ctx_len:]
    # the one-target batch of the same layout is the same text: history titles, then the next title
    single = codec.collate(history_matrix([np.array([0, 5, 7])], 3), np.array([2]))
    assert single["input_ids"][0].tolist() == b["input_ids"][0][b["attention_mask"][0] == 1].tolist()


@pytest.mark.parametrize("soft", [False, True])
def test_packed_loss_equals_single_target_loss(tiny, soft):
    cfg, tok, rec, codec = _setup(tiny, soft=soft)
    win = np.array([[0, 5, 7, 2], [-1, 9, 3, 11], [4, 6, 1, 10]])
    n_t = np.array([3, 2, 1])
    tens = lambda d: {k: torch.from_numpy(v) for k, v in d.items() if soft or k != "soft_items"}  # noqa: E731
    with torch.no_grad():
        packed = rec.target_nll(**tens(codec.collate_packed(win, n_t)))
        hists, tgts = [], []
        for w, k in zip(win, n_t):
            for j in range(len(w) - k, len(w)):
                hists.append(w[:j][w[:j] >= 0])
                tgts.append(w[j])
        single = rec.target_nll(**tens(codec.collate(history_matrix(hists, 3), np.array(tgts))))
    lens = codec.tgt_len[tgts].tolist()
    assert len(packed) == len(single) == sum(lens)
    per_packed = torch.stack([x.sum() for x in torch.split(packed, lens)])
    per_single = torch.stack([x.sum() for x in torch.split(single, lens)])
    torch.testing.assert_close(per_packed, per_single, atol=1e-4, rtol=1e-4)


def test_list_layout_beam_search_equals_exhaustive(tiny):
    cfg, tok, rec, codec = _setup(tiny)
    hists = [np.array([0, 1, 2]), np.array([5]), np.array([9, 3])]
    n = len(TITLES)
    items, scores = LLMRecommender(rec, codec, num_beams=n, batch_size=2).search(hists)
    ref_sorted, ref_items = torch.sort(exhaustive_scores(rec, codec, hists), 1, descending=True)
    torch.testing.assert_close(scores, ref_sorted, atol=1e-4, rtol=1e-4)
    assert torch.equal(items, ref_items)


def test_list_layout_errors(tiny):
    cfg, tok, rec, codec = _setup(tiny)
    with pytest.raises(DataError, match="prefix"):
        build_codec(tok, ["red lamp", "red lamp , green"], cfg)
    with pytest.raises(ConfigError, match="separator"):
        build_codec(tok, TITLES, LLMConfig(model=str(tiny), train_mode="packed", history_separator=""))
    single = build_codec(tok, TITLES, LLMConfig(model=str(tiny)))
    assert single.layout == "template" and not single.packable
    with pytest.raises(ConfigError, match="packed"):
        single.collate_packed(np.array([[0, 1]]), np.array([1]))


def test_packed_config_checks(make_cfg):
    from genrec.models.llm.family import check_config

    base = ["run.family=llm", "run.model=lora", "eval.ks=[5,10]", "llm.history_items=3", "llm.train_mode=packed"]
    check_config(make_cfg(*base))
    check_config(make_cfg(*base, "llm.variant=cf_inject"))
    check_config(make_cfg(*base, "llm.variant=sid_tokens", "llm.sid_history=sid"))
    for bad, match in [("llm.prompt_layout=template", "prompt_layout"), ("llm.min_context=4", "min_context"),
                       ("llm.use_chat_template=true", "chat"), ("llm.variant=sid_tokens", "sid_history")]:
        with pytest.raises(ConfigError, match=match):
            check_config(make_cfg(*base, bad))
