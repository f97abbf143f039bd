"""CF family entry: `run(ctx) -> FamilyResult` (the pipeline maps family "cf" here; run.model names
the model), plus `fit_item_embeddings` (MF-BPR item vectors for the SID injection ablation).

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
from genrec.models.cf.base import CFModel, FaissRanker
from genrec.models.cf.config import CFConfig
from genrec.models.cf.registry import get_model_class

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


def run(ctx):
    from genrec.pipeline import FamilyResult
    from genrec.train import count_params

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
                 s_per_epoch=round(res.train_time_s / max(1, len(res.history) - 0), 3) if res.history else None)
    log.info("cf/%s: item_erank=%.2f user_erank=%s (dim %d), best valid recall@10 %.4f at epoch %d",
             model.name, diag.get("item_erank", float("nan")), f"{diag.get('user_erank', float('nan')):.2f}",
             cfg.cf.dim, res.best_metric, res.best_epoch)
    ranker = FaissRanker(model) if cfg.cf.faiss else model
    return FamilyResult(ranker, count_params(model), extra, train_s)


def fit_item_embeddings(split, n_items: int, dim: int, seed: int = 0, epochs: int = 30, lr: float = 5e-3,
                        batch_size: int = 2048, run_dir: str | Path | None = None,
                        device: str = "cpu") -> np.ndarray:
    """Train MF-BPR on a Split and return its item embeddings as float32 [n_items, dim].

    Early-stops on valid recall@10 (patience 5); no checkpoints unless `run_dir` is given.
    """
    import tempfile

    from genrec.config import TrainConfig
    from genrec.pipeline import seed_everything

    seed_everything(seed)
    n_users = len(split.train)
    model = build_model("mf_bpr", CFConfig(dim=dim, loss="bpr"), n_users, n_items, seed=seed)
    tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=5, checkpoint_every=0,
                       progress=False, mixed_precision="no")
    with tempfile.TemporaryDirectory() as tmp:
        model.fit(split, tcfg, run_dir or tmp, device=torch.device(device))
        emb = model.item_embeddings().cpu().numpy().astype(np.float32)
    return emb
