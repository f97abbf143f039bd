"""The `cf` family (run.model names the model in genrec.models.cf.registry), plus
`fit_item_embeddings`: the one MF-BPR that both injection paths (SID adapter, LLM soft tokens) use.

After training, the model is saved to run_dir/model (save_pretrained) and the spectrum diagnostics of
its user and item matrices to run_dir/spectrum.json; effective ranks and the norm-popularity Spearman
go into FamilyResult.extra (item_erank, user_erank, item_energy_top1, item_norm_pop_spearman, ...).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from genrec.eval.spectrum import spectrum_report
from genrec.family import Family, FamilyResult, register_family
from genrec.models.cf.base import CFModel, FaissRanker
from genrec.models.cf.config import CFConfig
from genrec.models.cf.registry import available, get_model_class
from genrec.runtime import count_params, seed_everything
from genrec.scaling.tune import converged

log = logging.getLogger("genrec")


def build_model(name: str, cfg: CFConfig, n_users: int, n_items: int, max_len: int = 50, seed: int = 0) -> CFModel:
    return get_model_class(name)(cfg, n_users, n_items, max_len, seed)


@torch.no_grad()
def diagnostics(model: CFModel, split, n_items: int, batch_size: int = 1024) -> dict:
    """spectrum_report of the model's user vectors (for the test histories) and item vectors."""
    model.eval()
    ev = split.test
    users = torch.as_tensor(ev.users)
    rows = [model.user_embeddings(users[s:s + batch_size], ev.histories[s:s + batch_size]).cpu()
            for s in range(0, len(users), batch_size)]
    user_emb = torch.cat(rows) if rows else None
    _, items = split.train_pairs()
    counts = np.bincount(items, minlength=n_items)
    return spectrum_report(user_emb, model.item_embeddings().cpu(), counts)


def variant_name(c: CFConfig) -> str:
    """The collapse-fix switches a CF config turns on, as one label ('plain' when none)."""
    return "+".join(v for v, on in (("directspec", c.directspec), ("adap_tau", c.adap_tau),
                                    ("normalized", c.normalize and not c.adap_tau),
                                    (f"multi{c.num_embeddings}", c.num_embeddings > 1)) if on) or "plain"


class CFFamily(Family):
    name = "cf"
    sections = {"cf": CFConfig}
    axis_columns = ("cf_dim", "cf_loss", "cf_variant", "rec_layers")
    size_axes = frozenset({"rec_layers"})
    numeric_axes = frozenset({"cf_dim"})

    @property
    def models(self) -> tuple[str, ...]:  # CF models registered so far (user code may add more)
        return tuple(available())

    def axes(self, cfg) -> dict:
        c = cfg.cf
        row = {"cf_dim": c.dim, "cf_loss": c.loss, "cf_variant": variant_name(c)}
        if cfg.run.model in ("lightgcn", "sgl", "sasrec"):
            row["rec_layers"] = c.layers
        return row

    def run(self, ctx) -> FamilyResult:
        return run(ctx)

    def load(self, run_dir, cfg):
        return load(run_dir, cfg)


def load(run_dir, cfg):
    """The trained model of a run folder (<run_dir>/model, save_pretrained), ranked as in the run (faiss or
    score); no training data needed."""
    from genrec.models.cf.base import load_pretrained

    model = load_pretrained(Path(run_dir) / "model")
    return FaissRanker(model) if cfg.cf.faiss else model


def run(ctx) -> FamilyResult:
    cfg = ctx.cfg
    model = build_model(cfg.run.model, cfg.cf, ctx.data.n_users, ctx.data.n_items, cfg.data.max_history,
                        cfg.run.seed)
    t0 = time.perf_counter()
    res = model.fit(ctx.split, cfg.train, ctx.run_dir, device=ctx.device, eval_cfg=cfg.eval)
    train_s = res.train_time_s or (time.perf_counter() - t0)
    model.save_pretrained(Path(ctx.run_dir) / "model")
    diag = diagnostics(model, ctx.split, ctx.data.n_items, cfg.eval.batch_size)
    (Path(ctx.run_dir) / "spectrum.json").write_text(json.dumps(diag, indent=1))
    extra = {k: v for k, v in diag.items() if not k.endswith("singular_values")}
    extra.update(epochs_run=res.epochs_run, best_epoch=res.best_epoch, best_valid_recall10=res.best_metric,
                 s_per_epoch=round(res.train_time_s / max(1, len(res.history) - 0), 3) if res.history else None,
                 converged=converged(res.best_epoch, res.epochs_run, cfg.train.epochs))  # genrec.scaling.tune
    extra.update(model.train_counts)  # train_examples, scored_items, ... (genrec.compute)
    log.info("cf/%s: item_erank=%.2f user_erank=%s (dim %d), best valid recall@10 %.4f at epoch %d",
             model.name, diag.get("item_erank", float("nan")), f"{diag.get('user_erank', float('nan')):.2f}",
             cfg.cf.dim, res.best_metric, res.best_epoch)
    ranker = FaissRanker(model) if cfg.cf.faiss else model
    return FamilyResult(ranker, count_params(model), extra, train_s)


MF_BPR_DEFAULTS = {"lr": 5e-3, "batch_size": 2048, "patience": 5}


def fit_item_embeddings(split, n_items: int, dim: int, seed: int = 0, epochs: int = 30, lr: float = 5e-3,
                        batch_size: int = 2048, run_dir: str | Path | None = None,
                        device: str = "cpu") -> np.ndarray:
    """Train MF-BPR on a Split and return its item embeddings as float32 [n_items, dim].

    The one MF-BPR behind "CF injection" in both the SID and the LLM family (their rows record
    `inject_cf` = these settings). Early-stops on valid recall@10 (patience 5); no checkpoints unless
    `run_dir` is given.
    """
    import tempfile

    from genrec.config import TrainConfig

    seed_everything(seed)
    n_users = len(split.train)
    model = build_model("mf_bpr", CFConfig(dim=dim, loss="bpr"), n_users, n_items, seed=seed)
    tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=5, checkpoint_every=0,
                       progress=False, mixed_precision="no")
    with tempfile.TemporaryDirectory() as tmp:
        model.fit(split, tcfg, run_dir or tmp, device=torch.device(device))
        emb = model.item_embeddings().cpu().numpy().astype(np.float32)
    return emb


def mf_bpr_settings(dim: int, epochs: int, seed: int) -> dict:
    """What a row records about the injected CF vectors."""
    return {"model": "mf_bpr", "dim": dim, "max_epochs": epochs, "seed": seed, **MF_BPR_DEFAULTS}


register_family(CFFamily())
