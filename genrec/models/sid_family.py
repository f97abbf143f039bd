"""SID family entry point: item text -> frozen encoder -> SID tokenizer -> TIGER-style recommender.

`run(ctx)` encodes the items (cached), gets the tokenizer (cached stage), optionally builds the
injection vectors, trains the recommender with genrec.train.train_loop (teacher-forced CE on every
prefix of each user's training sequence, or a seeded sample per epoch; early stopping on recall@10
of beam-search recommendations for `decode.valid_users` validation users) and returns a model
whose `recommend()` runs the constrained beam search. The trained model is saved with
save_pretrained under <run_dir>/sid_rec/model (SIDRecModel.from_pretrained loads it back).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from genrec.encoders import encode_items
from genrec.family import FamilyResult
from genrec.errors import ConfigError
from genrec.eval.evaluate import evaluate
from genrec.models.sid.data import PrefixExamples, SequenceWindows
from genrec.models.sid_inject import mf_bpr_item_embeddings
from genrec.models.sid_rec import SIDRecModel
from genrec.sid.tokenizer import get_tokenizer
from genrec.runtime import count_params
from genrec.train import train_loop

log = logging.getLogger("genrec")
TOKENIZER_STATS = ("collision_rate", "codebook_util", "codebook_perplexity", "recon_error")


def check_config(cfg) -> None:
    m = cfg.sid_model
    d = cfg.decode
    if max(cfg.eval.ks) > d.num_beams:
        raise ConfigError(f"eval.ks: K={max(cfg.eval.ks)} exceeds decode.num_beams={d.num_beams}; beam search "
                          f"returns num_beams items per user: raise decode.num_beams or lower eval.ks")
    for key in ("num_beams", "batch_size"):
        if getattr(d, key) < 1:
            raise ConfigError(f"decode.{key} must be >= 1, got {getattr(d, key)}")
    for key in ("num_layers", "d_model", "num_heads", "d_kv", "d_ff"):
        if getattr(m, key) < 1:
            raise ConfigError(f"sid_model.{key} must be >= 1, got {getattr(m, key)}")
    if m.arch == "encoder_decoder" and m.num_decoder_layers < 1:
        raise ConfigError(f"sid_model.num_decoder_layers must be >= 1, got {m.num_decoder_layers}")
    if m.train_mode == "sequence" and m.arch != "decoder_only":
        raise ConfigError("sid_model.train_mode=sequence trains one causal pass per window and needs "
                          "sid_model.arch=decoder_only (the encoder_decoder model trains per prefix)")
    if m.arch == "decoder_only" and m.d_model % m.num_heads:
        raise ConfigError(f"sid_model: the decoder_only (Llama) backbone needs d_model divisible by num_heads "
                          f"(got {m.d_model} and {m.num_heads})")
    if not 0 <= m.dropout < 1:
        raise ConfigError(f"sid_model.dropout must be in [0, 1), got {m.dropout}")
    if cfg.data.max_history < 1:
        raise ConfigError(f"data.max_history must be >= 1, got {cfg.data.max_history}")


def param_counts(model: torch.nn.Module) -> dict:
    """count_params, with tied embedding matrices (T5 shares one table 3 ways) counted once."""
    p = count_params(model)
    emb = {id(m.weight): m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    p["params_non_embedding"] = int(p["params_total"] - sum(emb.values()))
    return p


def injection_vectors(ctx, emb: np.ndarray) -> np.ndarray | None:
    m = ctx.cfg.sid_model
    if m.inject == "none":
        return None
    if m.inject == "encoder":
        vec = emb
    else:
        vec = mf_bpr_item_embeddings(ctx.split.train, ctx.data.n_users, ctx.data.n_items, dim=m.inject_cf_dim,
                                     epochs=m.inject_cf_epochs, seed=ctx.cfg.run.seed)
    vec = np.asarray(vec, dtype=np.float32)
    return (vec - vec.mean(0)) / (vec.std() + 1e-8)  # one global scale: keeps relative geometry


def build_model(cfg, codes: np.ndarray, vocab_sizes: list[int], vectors: np.ndarray | None) -> SIDRecModel:
    m = cfg.sid_model
    torch.manual_seed(cfg.run.seed)
    model = SIDRecModel.from_codes(
        codes, vocab_sizes, vectors, arch=m.arch, n_user_tokens=m.user_tokens, max_history=cfg.data.max_history,
        num_layers=m.num_layers, num_decoder_layers=m.num_decoder_layers, d_model=m.d_model,
        num_heads=m.num_heads, d_kv=m.d_kv, d_ff=m.d_ff, dropout=m.dropout, feed_forward_proj=m.feed_forward_proj,
        inject_hidden=m.inject_hidden, train_mode=m.train_mode, num_beams=cfg.decode.num_beams,
        decode_batch_size=cfg.decode.batch_size)
    model.exclude_history = cfg.eval.exclude_history
    return model


def run(ctx):
    cfg = ctx.cfg
    check_config(cfg)
    m = cfg.sid_model
    emb, info = encode_items(ctx.data, cfg.encoder, return_info=True, progress=cfg.train.progress)
    encoder_id = f"{info.get('model_id')}@{info.get('revision')}"
    tok = get_tokenizer(emb, cfg.sid, cfg.run.seed, encoder_id, Path(str(info.get("file", ""))).stem,
                        progress=cfg.train.progress)
    if tok.n_items != ctx.data.n_items:
        raise ConfigError(f"SID tokenizer has {tok.n_items} items, the data {ctx.data.n_items}")
    vectors = injection_vectors(ctx, emb)
    model = build_model(cfg, tok.codes, list(tok.vocab_sizes), vectors)
    params = param_counts(model)
    log.info("SID recommender (%s): %s; SIDs %d levels, vocab sizes %s", m.arch, params, tok.n_levels,
             list(tok.vocab_sizes))

    if m.train_mode == "sequence":
        examples = SequenceWindows(ctx.split.train, cfg.data.max_history, m.sequence_window)
    else:
        examples = PrefixExamples(ctx.split.train, cfg.data.max_history)
    if len(examples) == 0:
        raise ConfigError(f"{ctx.data.name}: no training examples (every training sequence has < 2 items)")
    bs, n_sample = cfg.train.batch_size, m.examples_per_epoch
    valid = ctx.split.valid.head(cfg.decode.valid_users)

    def validate(mod) -> float:
        r = evaluate(mod, valid, ctx.data.n_items, [10], cfg.eval.exclude_history, batch_size=cfg.eval.batch_size)
        return r["recall@10"]

    out_dir = Path(ctx.run_dir) / "sid_rec"
    res = train_loop(model, lambda mod, b: mod(*b), lambda ep: examples.batches(ep, bs, cfg.run.seed, n_sample),
                     cfg.train, out_dir, validate=validate if len(valid) else None, device=ctx.device,
                     steps_per_epoch=examples.n_batches(bs, n_sample), desc="sid_rec")
    model.eval()
    model.save_pretrained(out_dir / "model")
    stats = {k: float(tok.stats[k]) for k in TOKENIZER_STATS if k in tok.stats}
    extra = {
        **stats,
        "sid_n_levels": tok.n_levels, "sid_vocab_sizes": list(tok.vocab_sizes), "encoder_id": encoder_id,
        "encoder_dims": int(emb.shape[1]), "train_examples": len(examples),
        "examples_per_epoch": min(n_sample, len(examples)) if n_sample > 0 else len(examples),
        "train_mode": m.train_mode, "targets_per_epoch": examples.targets_per_epoch(n_sample),
        "valid_users": len(valid), "epochs_run": res.epochs_run, "best_epoch": res.best_epoch,
        "best_valid_recall@10": res.best_metric, "steps": res.steps, "resumed_from_epoch": res.resumed_from_epoch,
        "final_loss": res.history[-1]["loss"] if res.history else None,
        "train_history": [{k: round(v, 5) if isinstance(v, float) else v for k, v in h.items()}
                          for h in res.history],
        "model_dir": str(out_dir / "model"), "params": params, "encode_s": info.get("encode_s"),
        "tokenizer_train_s": tok.stats.get("train_time_s"),
    }
    return FamilyResult(model, params, extra, res.train_time_s)
