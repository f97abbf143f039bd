"""The `sid` family: item text -> frozen encoder -> SID tokenizer -> TIGER-style recommender over SIDs.

`run(ctx)` encodes the items (cached), gets the tokenizer (cached stage), optionally builds the injection
vectors (inject=cf: the CF family's MF-BPR, `fit_item_embeddings`, as in the LLM family), trains the
recommender with genrec.train.train_loop (teacher-forced CE: one example per prefix, or one causal pass per
user window with sid_model.train_mode=sequence; early stopping on recall@10 of beam-search recommendations
for `decode.valid_users` validation users) and returns a model whose `recommend()` runs the constrained
beam search. The trained model is saved with save_pretrained under <run_dir>/sid_rec/model
(SIDRecModel.from_pretrained or AutoModel.from_pretrained loads it back).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from genrec.errors import ConfigError
from genrec.family import Family, FamilyResult, register_family
from genrec.models.sid.configuration import SIDModelSection, SIDRecConfig
from genrec.sid.config import SIDConfig

log = logging.getLogger("genrec")
TOKENIZER_STATS = ("collision_rate", "codebook_util", "codebook_perplexity", "recon_error")


class SIDFamily(Family):
    name = "sid"
    sections = {"sid": SIDConfig, "sid_model": SIDModelSection}
    models = ("tiger",)
    axis_columns = ("encoder", "quantizer", "sid_levels", "sid_codebook", "sid_latent", "rec_arch", "rec_layers",
                    "rec_d_model", "rec_heads", "rec_d_ff", "inject", "rec_train_mode")
    size_axes = frozenset({"rec_layers", "rec_d_model", "rec_heads", "rec_d_ff", "sid_latent"})
    numeric_axes = frozenset({"sid_levels", "sid_codebook"})

    def check(self, cfg) -> None:
        """Checks across sections and across sid_model keys (each value is checked when the section is read)."""
        super().check(cfg)
        d = cfg.decode
        if max(cfg.eval.ks) > d.num_beams:
            raise ConfigError(f"eval.ks: K={max(cfg.eval.ks)} exceeds decode.num_beams={d.num_beams}; beam "
                              f"search returns num_beams items per user: raise decode.num_beams or lower eval.ks")
        if d.num_beams < 1 or d.batch_size < 1:
            raise ConfigError(f"decode.num_beams and decode.batch_size must be >= 1, got {d.num_beams} and "
                              f"{d.batch_size}")
        if cfg.data.max_history < 1:
            raise ConfigError(f"data.max_history must be >= 1, got {cfg.data.max_history}")
        sid_rec_config(cfg)  # the keys that must go together, on the merged section

    def axes(self, cfg) -> dict:
        s, m = cfg.sid, cfg.sid_model
        return dict(encoder=cfg.encoder.name, quantizer=s.quantizer, sid_levels=s.levels,
                    sid_codebook=s.codebook_size, sid_latent=s.latent_dim, rec_arch=m.arch, rec_layers=m.num_layers,
                    rec_d_model=m.d_model, rec_heads=m.num_heads, rec_d_ff=m.d_ff, inject=m.inject,
                    rec_train_mode=m.train_mode)

    def run(self, ctx) -> FamilyResult:
        return run(ctx)

    def load(self, run_dir, cfg):
        return load(run_dir, cfg)


def load(run_dir, cfg):
    """The trained recommender of a run folder (<run_dir>/sid_rec/model: it carries its SID table, so no
    tokenizer or data is needed), decoding with the config's decode.num_beams / decode.batch_size."""
    from genrec.models.sid.modeling import SIDRecModel
    from genrec.runtime import resolve_device

    folder = Path(run_dir) / "sid_rec" / "model"
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{run_dir}: no trained SID recommender (sid_rec/model); the run did not finish")
    model = SIDRecModel.from_pretrained(str(folder)).to(resolve_device(cfg.run.device)).eval()
    model.config.num_beams, model.config.decode_batch_size = cfg.decode.num_beams, cfg.decode.batch_size
    return model


def sid_rec_config(cfg, **derived) -> SIDRecConfig:
    """SIDRecConfig from the `sid_model` section (+ the fields a run fills in); ConfigError if invalid."""
    try:
        return SIDRecConfig(**dataclasses.asdict(cfg.sid_model), **derived)
    except ValueError as e:
        raise ConfigError(f"sid_model: {e}") from None


def injection_vectors(ctx, emb: np.ndarray) -> tuple[np.ndarray | None, dict | None]:
    """(standardised per-item vectors or None, the MF-BPR settings for inject=cf or None)."""
    from genrec.models.cf.family import fit_item_embeddings, mf_bpr_settings

    m, seed = ctx.cfg.sid_model, ctx.cfg.run.seed
    if m.inject == "none":
        return None, None
    settings = None
    if m.inject == "encoder":
        vec = emb
    else:
        vec = fit_item_embeddings(ctx.split, ctx.data.n_items, m.inject_cf_dim, seed, epochs=m.inject_cf_epochs,
                                  device=str(ctx.device))
        settings = mf_bpr_settings(m.inject_cf_dim, m.inject_cf_epochs, seed)
    vec = np.asarray(vec, dtype=np.float32)
    return (vec - vec.mean(0)) / (vec.std() + 1e-8), settings  # one global scale: keeps relative geometry


def build_model(cfg, codes: np.ndarray, vocab_sizes: list[int], vectors: np.ndarray | None):
    import torch

    from genrec.models.sid.modeling import SIDRecModel

    config = sid_rec_config(cfg, max_history=cfg.data.max_history, num_beams=cfg.decode.num_beams,
                            decode_batch_size=cfg.decode.batch_size)
    torch.manual_seed(cfg.run.seed)
    return SIDRecModel.from_codes(codes, vocab_sizes, vectors, config=config)


def training_batches(ctx):
    from genrec.models.sid.data import PrefixExamples, SequenceWindows

    m, max_history = ctx.cfg.sid_model, ctx.cfg.data.max_history
    if m.train_mode == "sequence":
        examples = SequenceWindows(ctx.split.train, max_history, m.sequence_window)
    else:
        examples = PrefixExamples(ctx.split.train, max_history)
    if len(examples) == 0:
        raise ConfigError(f"{ctx.data.name}: no training examples (every training sequence has < 2 items)")
    return examples


def count_resumed(count, examples, epochs: int, cfg, n_sample: int) -> None:
    """Add the batches of the epochs a resumed run trained before its checkpoint (rebuilt on the host, the
    same seeded batches; at most train.max_steps x grad_accum batches in all)."""
    cap = cfg.train.max_steps * max(1, cfg.train.grad_accum) if cfg.train.max_steps else float("inf")
    seen = 0
    for epoch in range(epochs):
        for batch in examples.batches(epoch, cfg.train.batch_size, cfg.run.seed, n_sample):
            if seen >= cap:
                return
            count.add(batch)
            seen += 1


def run(ctx) -> FamilyResult:
    from genrec.eval.evaluate import evaluate
    from genrec.models.sid.data import TokenCount
    from genrec.runtime import count_params
    from genrec.sid.tokenizer import tokenizer_for
    from genrec.train import train_loop

    cfg, m = ctx.cfg, ctx.cfg.sid_model
    tok, emb, info = tokenizer_for(ctx.data, cfg, progress=cfg.train.progress)
    encoder_id = info["encoder_id"]
    if tok.n_items != ctx.data.n_items:
        raise ConfigError(f"SID tokenizer has {tok.n_items} items, the data {ctx.data.n_items}")
    vectors, inject_cf = injection_vectors(ctx, emb)
    model = build_model(cfg, tok.codes, list(tok.vocab_sizes), vectors)
    params = count_params(model)
    log.info("SID recommender (%s, %s): %s; SIDs %d levels, vocab sizes %s", m.arch, m.train_mode, params,
             tok.n_levels, list(tok.vocab_sizes))
    examples = training_batches(ctx)
    bs, n_sample = cfg.train.batch_size, m.examples_per_epoch
    valid = ctx.split.valid.head(cfg.decode.valid_users)

    def validate(mod) -> float:
        r = evaluate(mod, valid, ctx.data.n_items, [10], cfg.eval.exclude_history, batch_size=cfg.eval.batch_size)
        return r["recall@10"]

    out_dir = Path(ctx.run_dir) / "sid_rec"
    count = TokenCount(model.config)

    def make_batches(epoch: int):
        for batch in examples.batches(epoch, bs, cfg.run.seed, n_sample):
            count.add(batch)  # host tensors: counting needs no device sync
            yield batch

    res = train_loop(model, lambda mod, b: mod(*b), make_batches, cfg.train, out_dir,
                     validate=validate if len(valid) else None, device=ctx.device,
                     steps_per_epoch=examples.n_batches(bs, n_sample), desc="sid_rec")
    count_resumed(count, examples, res.resumed_from_epoch, cfg, n_sample)
    model.eval()
    model.save_pretrained(out_dir / "model")
    tok.save_pretrained(out_dir / "tokenizer")  # the SID table's source, to publish with the model
    extra = {
        **{k: float(tok.stats[k]) for k in TOKENIZER_STATS if k in tok.stats},
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
        "tokenizer_train_s": tok.stats.get("train_time_s"), **count.extra(),
    }
    if inject_cf is not None:
        extra["inject_cf"] = inject_cf
    return FamilyResult(model, params, extra, res.train_time_s)


register_family(SIDFamily())
