"""Run one point: data -> split -> family (fit) -> full-ranking evaluation -> a result dict.

The family comes from the registry (genrec.family); only the CLI and the sweep runner import this
module.
"""
from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import numpy as np
import torch

from genrec.compute import train_compute
from genrec.config import Config, to_dict
from genrec.identity import run_id, train_id
from genrec.errors import ConfigError
from genrec.data import RecData, Split, load_data, split_data
from genrec.eval.evaluate import evaluate, process_shard
from genrec.eval.metrics import MISS, bootstrap_intervals, metrics_from_gt
from genrec.family import FamilyResult, RunContext, get_family
from genrec.runtime import (cpu_threads, device_name, peak_memory_mb, resolve_device, resolve_precision,
                            seed_everything, tune_cpu_malloc)

log = logging.getLogger("genrec")


def is_main_process() -> bool:
    """False on the other ranks of a data-parallel point (they train and evaluate, rank 0 writes); before the
    process group is up, the launcher's RANK variable says."""
    import os

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return process_shard()[0] == 0
    return int(os.environ.get("RANK", "0") or 0) == 0


def prepare(cfg: Config) -> tuple[RecData, Split]:
    data = load_data(cfg.data)
    return data, split_data(data, cfg.data)


def check(cfg: Config) -> None:
    """Validate a config against its family before any data is loaded (raises ConfigError)."""
    get_family(cfg.run.family).check(cfg)


def refit(fam, ctx: RunContext, first: FamilyResult) -> FamilyResult:
    """Retrain from scratch on train + validation for the validated number of epochs (the first fit's
    best epoch + 1, no early stopping); the refit model is the one tested. Non-sequential models then
    see the validation interaction at test time, as sequential ones see it as input."""
    best = first.extra.get("best_epoch")
    if best is None or int(best) < 0:
        raise ConfigError(f"train.refit: family {fam.name!r} reported no validated best epoch (set train.eval_every "
                          f"> 0 and give it validation users)")
    cfg = copy.deepcopy(ctx.cfg)
    cfg.train.epochs, cfg.train.patience, cfg.train.eval_every = int(best) + 1, 0, 0
    cfg.train.refit, cfg.train.include_valid = False, True
    second = fam.run(RunContext(cfg, ctx.data, ctx.split.fold_valid(), Path(ctx.run_dir) / "refit", ctx.device))
    keep = {k: v for k, v in first.extra.items() if k in ("best_epoch", "epochs_run", "best_valid_recall10",
                                                          "best_valid_recall@10")}
    second.extra = {**second.extra, "refit_epochs": int(best) + 1, "first_fit": keep}
    second.train_time_s = (first.train_time_s or 0.0) + (second.train_time_s or 0.0)
    return second


def write_run_files(run_dir: Path, cfg: Config, data: RecData) -> None:
    """The parts of a run folder every family has: resolved config and the item-id map."""
    import json

    import yaml

    (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    ids = run_dir / "item_ids.json"
    if not ids.exists():  # internal item index i <-> the dataset's own item id item_ids[i]
        ids.write_text(json.dumps([str(x) for x in data.item_ids]))


def write_metrics(run_dir: Path, rid: str, metrics: dict) -> None:
    """metrics.json holds the run's own evaluation; `genrec eval` adds evals/<run id>.json."""
    import json

    path = run_dir / "metrics.json"
    if path.exists() and json.loads(path.read_text()).get("run_id") != rid:
        path = run_dir / "evals" / f"{rid}.json"
        path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"run_id": rid, **metrics}, indent=1))


def user_intervals(users: dict, ks: list[int]) -> dict:
    """95% bootstrap intervals over the evaluated users of recall@K and ndcg@K (row extra.ci95_users)."""
    per_user = metrics_from_gt(np.minimum(users["greater"], MISS), users["ties"], ks)
    keys = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
    return {k: [round(v, 5) for v in lohi] for k, lohi in bootstrap_intervals(per_user, keys).items()}


def write_user_ranks(run_dir: Path, rid: str, users: dict) -> None:
    """<run_dir>/user_ranks_<run id>.npz: per evaluated user, its index and the items ranked above / tied
    with its target, so two rows can be compared user by user (paired) on the users they share."""
    np.savez_compressed(run_dir / f"user_ranks_{rid}.npz", users=users["users"], greater=users["greater"],
                        ties=users["ties"])


def run_point(cfg: Config, data: RecData | None = None, split: Split | None = None,
              run_dir: Path | None = None) -> dict:
    """Fit and evaluate one configuration; returns the metrics and provenance (not yet a CSV row).

    The run folder (`run.output_dir`/<training id>, or `run_dir` to re-evaluate a trained run) holds
    config.yaml, item_ids.json, metrics.json, the family's model and checkpoints, and run.log when run
    from the CLI or a sweep. A finished training run is resumed, not repeated: only evaluation runs.
    """
    tune_cpu_malloc()  # every entry point (CLI, sweep, Python API) trains with the reusable heap
    with cpu_threads(cfg.run.threads) as threads:  # run.threads: 0 = as launched
        return _run_point(cfg, data, split, run_dir, threads)


def _run_point(cfg: Config, data: RecData | None, split: Split | None, run_dir: Path | None, threads: int) -> dict:
    fam = get_family(cfg.run.family)
    fam.check(cfg)
    seed_everything(cfg.run.seed)
    if data is None or split is None:
        data, split = prepare(cfg)
    rid = run_id(cfg, data.fingerprint())
    run_dir = Path(run_dir) if run_dir is not None else Path(cfg.run.output_dir) / train_id(cfg, data.fingerprint())
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_main_process():  # data-parallel: rank 0 writes the run files
        write_run_files(run_dir, cfg, data)
    device = resolve_device(cfg.run.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ctx = RunContext(cfg, data, split.fold_valid() if cfg.train.include_valid else split, run_dir, device)
    t0 = time.perf_counter()
    result: FamilyResult = fam.run(ctx)
    if cfg.train.refit:
        result = refit(fam, ctx, result)
    fit_s = time.perf_counter() - t0
    evalset = split.test if cfg.eval.split == "test" else split.valid
    evalset = evalset.select(cfg.eval.max_users, cfg.eval.sample_seed)
    t1 = time.perf_counter()
    users: dict = {}
    metrics = evaluate(result.model, evalset, data.n_items, cfg.eval.ks, cfg.eval.exclude_history,
                       cfg.eval.batch_size, progress=cfg.train.progress, desc=f"eval {cfg.run.model}",
                       exclude_window=cfg.eval.exclude_window, per_user=users)
    eval_s = time.perf_counter() - t1
    result.extra = {**result.extra, "ci95_users": user_intervals(users, cfg.eval.ks), "cpu_threads": threads}
    if is_main_process():
        write_metrics(run_dir, rid, metrics)
        write_user_ranks(run_dir, rid, users)
        from genrec.inference import write_model_card  # README.md model cards, run_info.json, user_ids.json
        write_model_card(run_dir, result.params, data)
    compute = train_compute(result.extra, result.params)  # train_tokens, train_flops (None when unreported)
    return {
        "run_id": rid, "run_dir": str(run_dir), "metrics": metrics, **compute,
        "params": {**result.params, **compute},  # make_row copies params keys that are columns
        "extra": result.extra, "train_time_s": result.train_time_s or fit_s, "eval_time_s": eval_s,
        "peak_mem_mb": peak_memory_mb(device), "device": device_name(device),
        "precision": resolve_precision(cfg.train.mixed_precision, device),
        "data": {"name": data.name, "source": data.source, "n_users": data.n_users, "n_items": data.n_items,
                 "n_interactions": data.n_interactions, "fingerprint": data.fingerprint(),
                 "split_fingerprint": split.fingerprint(), "protocol": split.protocol},
    }
