"""Section `decode`: genrec's vectorised trie beam search vs HuggingFace `generate(num_beams=K,
prefix_allowed_tokens_fn=...)` on the same weights and inputs, for the SID recommender (its T5 backbone)
and for a causal LM with LoRA generating item titles.

The reference (genrec.decode.reference) is what a TIGER / LLM-as-RS reimplementation usually writes: a
dict from each decoded prefix to its allowed next tokens, called once per beam per step by HF's
PrefixConstrainedLogitsProcessor. Both searches use the full-vocabulary log-softmax masked to the trie, no
length penalty and no sampling; the HF settings are all passed in an explicit GenerationConfig. Both are
run without history exclusion (the reference has no banned items).
"""
from __future__ import annotations

import numpy as np
import torch
from speed_common import Bench, ml1m_like

from genrec.decode.reference import gen_config, hf_items, prefix_fn, prefix_table


def agreement(ours: tuple, ref: tuple) -> dict:
    """Share of users whose top-K lists are identical (order included), mean top-K overlap (set), and the
    largest score gap over items both lists hold."""
    oi, os_ = (t.cpu() for t in ours)
    ri, rs = (t.cpu() for t in ref)
    same = (oi == ri).all(1).float().mean().item()
    hit = (oi[:, :, None] == ri[:, None, :]) & (oi[:, :, None] >= 0)
    n = (oi >= 0).sum(1).clamp(min=1)
    overlap = (hit.any(2).sum(1) / n).mean().item()
    gap = (os_[:, :, None] - rs[:, None, :]).abs()[hit]
    return {"identical": same, "overlap": overlap, "max_score_gap": gap.max().item() if gap.numel() else 0.0,
            "ours_mean_logp": _mean_finite(os_), "ref_mean_logp": _mean_finite(rs)}


def _mean_finite(s: torch.Tensor) -> float:
    f = s[torch.isfinite(s)]
    return f.mean().item() if f.numel() else float("nan")


# ----------------------------------------------------------------------------- SID (T5)


def random_codes(n: int, levels: int, card: int, seed: int) -> np.ndarray:
    """n distinct random SIDs of `levels` codes in [0, card)."""
    if n > card ** levels:
        raise ValueError(f"random_codes: {n} items do not fit {levels} levels of {card} codes")
    rng = np.random.default_rng(seed)
    draw = 2 * n + 16
    while True:
        codes = np.unique(rng.integers(0, card, (draw, levels)), axis=0)
        if len(codes) >= n:
            return codes[rng.permutation(len(codes))[:n]]
        draw *= 2


def sid_model(bench: Bench, n_items: int, levels: int, card: int, size: dict, max_history: int):
    from genrec.models.sid.modeling import SIDRecModel

    torch.manual_seed(bench.seed)
    codes = random_codes(n_items, levels, card, bench.seed)
    model = SIDRecModel.from_codes(codes, [card] * levels, max_history=max_history, dropout=0.0, **size)
    return model.to(bench.device).eval()


def compare_sid(model, users: torch.Tensor, hist: torch.Tensor, K: int, bench: Bench | None = None):
    """(ours, ref, timings): genrec beam_search vs backbone.generate on the same prompt tokens."""
    from genrec.models.sid.data import BOS, PAD

    dev = model.item_tokens.device
    users, hist = users.to(dev), hist.to(dev)
    ids, mask, _ = model._prompt(users, hist, bos=False)  # the exact tokens beam_search encodes
    L = model.config.n_levels
    table = prefix_table(model.item_tokens.cpu().tolist())
    fn = prefix_fn(table, 1, PAD)  # decoder ids = [BOS, t1, ...]
    gc = gen_config(K, L, eos=BOS, pad=PAD, decoder_start=BOS)

    def ours():
        return model.beam_search(users, hist, K)

    def ref():
        return model.backbone.generate(input_ids=ids, attention_mask=mask, generation_config=gc,
                                       prefix_allowed_tokens_fn=fn)

    with torch.no_grad():
        if bench is None:
            return ours(), hf_items(model.trie, ref(), 1, K), None
        t_ours, o = bench.time(ours)
        t_ref, r = bench.time(ref)
    return o, hf_items(model.trie, r, 1, K), (t_ours, t_ref)


def sid_section(bench: Bench) -> None:
    size = bench.pick(dict(num_layers=2, num_decoder_layers=2, d_model=32, num_heads=2, d_kv=16, d_ff=64),
                      dict(num_layers=4, num_decoder_layers=4, d_model=128, num_heads=6, d_kv=64, d_ff=1024),
                      dict(num_layers=4, num_decoder_layers=4, d_model=128, num_heads=6, d_kv=64, d_ff=1024))
    n_items, levels, card = bench.pick((300, 2, 32), (3706, 3, 256), (3706, 3, 256))
    H = bench.pick(8, 50, 50)
    U = bench.pick(8, 32, 256)
    beams = bench.pick([10, 20], [10, 50], [10, 50])
    model = sid_model(bench, n_items, levels, card, size, H)
    g = torch.Generator().manual_seed(bench.seed)
    hist = torch.randint(0, n_items, (U, H), generator=g)
    users = torch.arange(U)
    what = f"SID T5 {size['num_layers']}+{size['num_decoder_layers']}L d{size['d_model']}"
    for K in beams:
        o, r, (t_o, t_r) = compare_sid(model, users, hist, K, bench)
        a = agreement(o, r)
        note = (f"{what}, {n_items} items, {levels}x{card} codes, {U} users x {H} history items; ours "
                f"beam_search vs backbone.generate(prefix_allowed_tokens_fn)")
        bench.add("decode", f"sid-t5 beam{K}", U / t_o, U / t_r, "users/s", note)
        bench.add("decode", f"sid-t5 beam{K} top-K agreement", a["identical"], None, "frac identical",
                  f"mean overlap {a['overlap']:.3f}, max |score gap| {a['max_score_gap']:.2e}")


# ----------------------------------------------------------------------------- LLM with LoRA


def llm_setup(bench: Bench, titles: list[str], n_items_cap: int, lora_rank: int = 8, history_items: int = 10):
    """(LLMRec, codec, tokenizer, what): tiny random Llama built in code, or a real local model."""
    from genrec.models.llm.config import LLMConfig
    from genrec.models.llm.model import LLMRec, load_base, wrap_lora
    from genrec.models.llm.prompts import build_codec, unique_titles
    from genrec.models.llm.tiny import make_tiny_llm, prompt_words

    titles, _ = unique_titles(list(titles)[:n_items_cap])
    if bench.llm == "tiny":
        hidden = 32 if bench.quick else 64
        folder = make_tiny_llm(bench.workdir / "tiny_llm", titles + prompt_words(), hidden=hidden, layers=2,
                               heads=4, seed=bench.seed)
        model, what = str(folder), f"tiny random Llama (hidden {hidden}, 2 layers, word-level vocab)"
    else:
        model, what = bench.llm, bench.llm
    cfg = LLMConfig(model=model, lora_rank=lora_rank, lora_dropout=0.0, history_items=history_items)
    tok, base = load_base(cfg, bench.device)
    torch.manual_seed(bench.seed)
    rec = LLMRec(wrap_lora(base, cfg)).to(bench.device).eval()
    with torch.no_grad():  # a non-zero adapter, so LoRA actually changes the logits
        g = torch.Generator().manual_seed(bench.seed)
        for n, p in rec.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    codec = build_codec(tok, titles, cfg)
    return rec, codec, tok, f"{what} + LoRA r{lora_rank}"


def compare_llm(rec, codec, tok, histories: list[np.ndarray], K: int, bench: Bench | None = None):
    from genrec.models.llm.prompts import history_matrix
    from genrec.models.llm.recommender import LLMRecommender

    dev = next(rec.parameters()).device
    recm = LLMRecommender(rec, codec, K, batch_size=len(histories))
    t = codec.collate(history_matrix(histories, codec.history_items), pad_left=True)
    ids = torch.from_numpy(t["input_ids"]).to(dev)
    mask = torch.from_numpy(t["attention_mask"]).to(dev)
    P = ids.shape[1]
    fn = prefix_fn(prefix_table(codec.target_sequences()), P, codec.pad_id)
    gc = gen_config(K, recm.max_steps, eos=tok.eos_token_id, pad=codec.pad_id)

    def ours():
        return recm.search(histories)

    def ref():
        return rec.lm.generate(input_ids=ids, attention_mask=mask, generation_config=gc, prefix_allowed_tokens_fn=fn)

    with torch.no_grad():
        if bench is None:
            return ours(), hf_items(recm.trie, ref(), P, K, tok.eos_token_id), None
        t_ours, o = bench.time(ours)
        t_ref, r = bench.time(ref)
    return o, hf_items(recm.trie, r, P, K, tok.eos_token_id), (t_ours, t_ref)


def llm_section(bench: Bench) -> None:
    d = ml1m_like(bench)
    U = bench.pick(4, 16, 128) if bench.llm == "tiny" else bench.pick(2, 2, 32)
    beams = bench.pick([10], [10, 50], [10, 50]) if bench.llm == "tiny" else bench.pick([10], [10], [10, 50])
    rec, codec, tok, what = llm_setup(bench, d.titles, d.n_items)
    histories = [h[-codec.history_items:] for h in d.split.test.histories[:U]]
    lens = codec.tgt_len[:-1]
    exact, n_ex = None, min(len(histories), 4)
    if bench.llm == "tiny":  # teacher-forced log-prob of every item for the first few users
        from genrec.models.llm.recommender import exhaustive_scores

        exact = exhaustive_scores(rec, codec, histories[:n_ex], batch_items=bench.pick(64, 16, 64))
    for K in beams:
        o, r, (t_o, t_r) = compare_llm(rec, codec, tok, histories, K, bench)
        a = agreement(o, r)
        bench.add("decode", f"llm-lora beam{K}", U / t_o, U / t_r, "users/s",
                  f"{what}; {codec.n_items} {d.what} titles ({lens.min()}-{lens.max()} tokens incl. EOS), "
                  f"{U} users x {codec.history_items} history titles; ours LLMRecommender.search vs "
                  "PeftModel.generate(prefix_allowed_tokens_fn)")
        note = (f"mean overlap {a['overlap']:.3f}, max |score gap| {a['max_score_gap']:.2e}, mean top-K logp "
                f"ours {a['ours_mean_logp']:.3f} vs HF {a['ref_mean_logp']:.3f}")
        if exact is not None:
            true = exact.topk(K, 1).indices
            rec_o, rec_r = (((it[:n_ex].cpu()[:, :, None] == true[:, None, :]).any(2).float().mean().item())
                            for it in (o[0], r[0]))
            note += f"; share of the exhaustive top-{K} found (first {n_ex} users): ours {rec_o:.3f}, HF {rec_r:.3f}"
        bench.add("decode", f"llm-lora beam{K} top-K agreement", a["identical"], None, "frac identical",
                  note + " (both keep K running beams plus a pool of K finished titles)")


def run(bench: Bench) -> None:
    sid_section(bench)
    llm_section(bench)
