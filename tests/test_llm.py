"""LLM-as-RS units on a tiny random Llama with a word-level tokenizer built in code (no downloads)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genrec.errors import ConfigError, DataError, GenrecError
from genrec.models.llm.config import LLMConfig
from genrec.models.llm.model import LLMRec, load_base, wrap_lora
from genrec.models.llm.prompts import build_codec, history_matrix, training_examples, unique_titles
from genrec.models.llm.recommender import LLMRecommender, exhaustive_scores
from genrec.models.llm.tiny import make_tiny_llm, prompt_words

COLOURS = ["red", "green", "blue"]
KINDS = ["lamp", "kettle"]
TITLES = [f"{c} {k} number {i}" for i, (c, k) in enumerate((c, k) for c in COLOURS for k in KINDS for _ in range(2))]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = make_tiny_llm(tmp_path_factory.mktemp("tiny"), TITLES + prompt_words())
    return folder


def _rec(folder, **kw):
    torch.manual_seed(0)
    cfg = LLMConfig(model=str(folder), lora_rank=4, lora_dropout=0.0, history_items=3, **kw)
    tok, base = load_base(cfg, torch.device("cpu"))
    rec = LLMRec(wrap_lora(base, cfg))
    with torch.no_grad():  # non-zero LoRA B so the adapter changes the outputs (tests see it round-trip)
        for n, p in rec.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    return cfg, tok, rec, build_codec(tok, TITLES, cfg)


def test_history_matrix_and_examples():
    h = history_matrix([np.array([1, 2, 3, 4]), np.array([5]), np.array([], dtype=np.int64)], 3)
    assert h.tolist() == [[2, 3, 4], [-1, -1, 5], [-1, -1, -1]]
    train = [np.array([0, 1, 2, 3]), np.array([7]), np.array([4, 5])]
    hist, tgt, user = training_examples(train, 2)
    assert tgt.tolist() == [1, 2, 3, 5] and user.tolist() == [0, 0, 0, 2]
    assert hist.tolist() == [[-1, 0], [0, 1], [1, 2], [-1, 4]]
    hist, tgt, user = training_examples(train, 2, max_users=1, targets_per_user=1)
    assert tgt.tolist() == [3] and hist.tolist() == [[1, 2]]
    assert unique_titles(["a", "b", "a"]) == (["a", "b", "a [2]"], 1)


def test_collate_matches_naive_concatenation(tiny):
    cfg, tok, rec, codec = _rec(tiny)
    hists = [np.array([0, 5, 7]), np.array([3])]
    targets = np.array([2, 11])
    for left in (False, True):
        b = codec.collate(history_matrix(hists, 3), targets, pad_left=left)
        for r, (hh, t) in enumerate(zip(hists, targets)):
            text = "A user watched, in order: " + " , ".join(TITLES[i] for i in hh) + " . The next item is:"
            prompt = tok(text, add_special_tokens=False)["input_ids"]
            want = prompt + tok(TITLES[t], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            m = b["attention_mask"][r].astype(bool)
            assert b["input_ids"][r][m].tolist() == want
            assert (m[-1] if not left else m[0]) == (len(want) == b["input_ids"].shape[1]) or m.sum() < len(m)
            lab = b["labels"][r][m]
            assert (lab[: len(prompt)] == -100).all() and lab[len(prompt):].tolist() == want[len(prompt):]
            assert b["position_ids"][r][m].tolist() == list(range(len(want)))
        assert b["attention_mask"][1].sum() < b["attention_mask"][0].sum()
        assert (b["attention_mask"][1][:3] == 0).all() if left else (b["attention_mask"][1][-3:] == 0).all()


def test_training_lowers_loss(tiny):
    cfg, tok, rec, codec = _rec(tiny)
    hist, tgt, _ = training_examples([np.arange(9) % len(TITLES)], 3)
    batch = {k: torch.from_numpy(v) for k, v in codec.collate(hist, tgt).items() if k != "soft_items"}
    trainable = [p for p in rec.parameters() if p.requires_grad]
    assert 0 < sum(p.numel() for p in trainable) < sum(p.numel() for p in rec.parameters())
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    rec.train()
    losses = []
    for _ in range(15):
        loss = rec(**batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.15 and losses[-1] == min(losses), losses


def test_beam_search_equals_exhaustive_and_is_valid(tiny):
    cfg, tok, rec, codec = _rec(tiny)
    hists = [np.array([0, 1, 2]), np.array([5]), np.array([9, 3]), np.array([11, 10, 4, 6])]
    n = len(TITLES)
    r = LLMRecommender(rec, codec, num_beams=n, batch_size=3)
    items, scores = r.search(hists)
    assert items.shape == (4, n)
    assert ((items >= 0) & (items < n)).all()
    assert all(len(set(row)) == n for row in items.tolist())  # every title exactly once
    ref = exhaustive_scores(rec, codec, hists)
    ref_sorted, ref_items = torch.sort(ref, 1, descending=True)
    torch.testing.assert_close(scores, ref_sorted, atol=1e-4, rtol=1e-4)
    assert torch.equal(items, ref_items)
    # fewer beams: still valid, distinct, and the top item is the exhaustive argmax here
    top = LLMRecommender(rec, codec, num_beams=4, batch_size=4).recommend(torch.arange(4), hists, 3)
    assert top.shape == (4, 3) and ((top >= 0) & (top < n)).all()
    with pytest.raises(ConfigError, match="num_beams"):
        r.recommend(torch.arange(4), hists, n + 1)
    # bf16 autocast (CPU bf16 matmuls): still only real items, each once
    bf = LLMRecommender(rec, codec, num_beams=6, batch_size=4, autocast_dtype=torch.bfloat16).search(hists)[0]
    assert ((bf >= 0) & (bf < n)).all() and all(len(set(row)) == 6 for row in bf.tolist())


def test_exclusion_inside_search_equals_exhaustive_on_unseen(tiny):
    """Ranking rule: exclude= bans titles inside the beam search: with beams covering the catalogue the
    lists equal exhaustive scoring restricted to unseen items, and every list holds min(k, unseen) items."""
    cfg, tok, rec, codec = _rec(tiny)
    n = len(TITLES)
    hists = [np.array([0, 1, 2]), np.array([], dtype=np.int64), np.array([9, 3, 3]), np.arange(n - 2),
             np.arange(n)]
    ref = exhaustive_scores(rec, codec, hists)
    for u, h in enumerate(hists):
        ref[u, torch.as_tensor(h, dtype=torch.long)] = float("-inf")
    order = torch.sort(ref, dim=1, descending=True, stable=True)
    want = torch.where(torch.isfinite(order.values), order.indices, -1)
    full = LLMRecommender(rec, codec, num_beams=n, batch_size=2)
    items, scores = full.search(hists, exclude=hists)
    assert torch.equal(items, want)
    fin = torch.isfinite(order.values)
    torch.testing.assert_close(scores[fin], order.values[fin], atol=1e-4, rtol=1e-4)
    unseen = fin.sum(1)
    top = LLMRecommender(rec, codec, num_beams=4, batch_size=3).recommend(torch.arange(5), hists, 4, exclude=hists)
    assert torch.equal((top >= 0).sum(1), unseen.clamp(max=4))
    for row, h in zip(top.tolist(), hists):
        real = [i for i in row if i >= 0]
        assert len(set(real)) == len(real) and not set(real) & set(h.tolist())
    with pytest.raises(ValueError, match="exclude"):
        full.recommend(torch.arange(5), hists, 3, exclude=hists[:2])


def test_adapter_round_trip(tiny, tmp_path):
    cfg, tok, rec, codec = _rec(tiny)
    hists = [np.array([0, 1, 2]), np.array([7])]
    before = exhaustive_scores(rec, codec, hists)
    rec.save_adapter(tmp_path / "ad", cfg)
    assert (tmp_path / "ad" / "adapter_config.json").is_file()
    rec2, tok2 = LLMRec.load_adapter(tmp_path / "ad")
    torch.testing.assert_close(exhaustive_scores(rec2, codec, hists), before)
    _, _, fresh, _ = _rec(tiny)
    with torch.no_grad():
        for n, p in fresh.named_parameters():
            if "lora_B" in n:
                p.zero_()
    assert not torch.allclose(exhaustive_scores(fresh, codec, hists), before)


def test_config_errors(tiny):
    with pytest.raises(ConfigError, match="target_modules"):
        _rec(tiny, target_modules=["nope_proj"])
    with pytest.raises(ConfigError, match="history"):
        _rec(tiny, prompt_template="no placeholder")
    with pytest.raises(GenrecError):  # neither a folder nor a known short name
        load_base(LLMConfig(model=str(tiny / "missing")), torch.device("cpu"))
    with pytest.raises(ConfigError, match="CUDA|bitsandbytes"):
        load_base(LLMConfig(model=str(tiny), load_in="4bit"), torch.device("cpu"))
    cfg, tok, rec, codec = _rec(tiny)
    with pytest.raises(DataError, match="share"):
        build_codec(tok, TITLES[:2] + TITLES[:1], cfg)


def test_chat_template_and_gradient_checkpointing(tiny):
    from genrec.models.llm.prompts import prompt_pieces

    cfg, tok, rec, codec = _rec(tiny, gradient_checkpointing=True)
    tok.chat_template = "{% for m in messages %}<s> {{ m['content'] }} </s>{% endfor %}{% if add_generation_prompt %} item{% endif %}"
    before, after = prompt_pieces(tok, "A user watched:{history}. next", use_chat=True)
    assert before[0] == tok.bos_token_id and tok.eos_token_id in after
    assert tok.convert_ids_to_tokens(after)[-1] == "item"
    hist, tgt, _ = training_examples([np.arange(5)], 3)
    batch = {k: torch.from_numpy(v) for k, v in codec.collate(hist, tgt).items() if k != "soft_items"}
    rec.train()
    rec(**batch).backward()
    grads = [p.grad for n, p in rec.named_parameters() if "lora_A" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
