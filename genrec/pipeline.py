"""Run one point: data -> split -> family (fit) -> full-ranking evaluation -> a leaderboard row.

Each family is a function `run(ctx) -> FamilyResult`, registered by name in FAMILIES as
"module:function" so a family's heavy imports happen only when it runs.
"""
from __future__ import annotations

import importlib
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genrec.config import Config, config_hash, to_dict
from genrec.data import RecData, Split, load_data, split_data
from genrec.errors import ConfigError
from genrec.eval.evaluate import evaluate
from genrec.train import peak_memory_mb, resolve_device

log = logging.getLogger("genrec")

FAMILIES: dict[str, str] = {
    "baseline": "genrec.eval.baselines:run_baseline",
    "cf": "genrec.models.cf.family:run",
    "sid": "genrec.models.sid_family:run",
    "llm": "genrec.models.llm.family:run",
}


@dataclass
class RunContext:
    cfg: Config
    data: RecData
    split: Split
    run_dir: Path
    device: torch.device


@dataclass
class FamilyResult:
    model: object  # has score(users, histories) or recommend(users, histories, k)
    params: dict = field(default_factory=dict)  # params_total / params_non_embedding / params_trainable
    extra: dict = field(default_factory=dict)  # tokenizer stats, train history, ... (into the row)
    train_time_s: float = 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


NOT_RESULT_KEYS = {"run": ("output_dir", "leaderboard", "name", "device"), "train": ("progress", "num_workers"),
                   "encoder": ("device", "threads", "batch_size")}


def _diff(d: dict, base: dict) -> dict:
    out = {}
    for k, v in d.items():
        b = base.get(k, object())
        if isinstance(v, dict) and isinstance(b, dict):
            sub = _diff(v, b)
            if sub:
                out[k] = sub
        elif v != b:
            out[k] = v
    return out


def run_id(cfg: Config) -> str:
    """Hash of the settings that change the result, taken as their difference from the defaults.

    Output paths, labels and speed knobs are left out, and a newly added config field (at its
    default) leaves every existing run id unchanged.
    """
    d = to_dict(cfg)
    for section, keys in NOT_RESULT_KEYS.items():
        d[section] = {k: v for k, v in d[section].items() if k not in keys}
    return config_hash(_diff(d, to_dict(Config())))


def resolve_family(name: str):
    if name not in FAMILIES:
        raise ConfigError(f"run.family: unknown family {name!r} (known: {', '.join(FAMILIES)})")
    mod, fn = FAMILIES[name].split(":")
    return getattr(importlib.import_module(mod), fn)


def prepare(cfg: Config) -> tuple[RecData, Split]:
    data = load_data(cfg.data)
    return data, split_data(data, cfg.data)


def run_point(cfg: Config, data: RecData | None = None, split: Split | None = None) -> dict:
    """Fit and evaluate one configuration; returns the metrics and provenance (not yet a CSV row)."""
    seed_everything(cfg.run.seed)
    fam = resolve_family(cfg.run.family)
    if data is None or split is None:
        data, split = prepare(cfg)
    rid = run_id(cfg)
    run_dir = Path(cfg.run.output_dir) / rid
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.run.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ctx = RunContext(cfg, data, split, run_dir, device)
    t0 = time.perf_counter()
    result: FamilyResult = fam(ctx)
    fit_s = time.perf_counter() - t0
    evalset = split.test if cfg.eval.split == "test" else split.valid
    evalset = evalset.head(cfg.eval.max_users)
    t1 = time.perf_counter()
    metrics = evaluate(result.model, evalset, data.n_items, cfg.eval.ks, cfg.eval.exclude_history,
                       cfg.eval.batch_size, progress=cfg.train.progress, desc=f"eval {cfg.run.model}")
    eval_s = time.perf_counter() - t1
    return {
        "run_id": rid, "run_dir": str(run_dir), "metrics": metrics, "params": result.params,
        "extra": result.extra, "train_time_s": result.train_time_s or fit_s, "eval_time_s": eval_s,
        "peak_mem_mb": peak_memory_mb(device), "device": _device_name(device),
        "data": {"name": data.name, "source": data.source, "n_users": data.n_users, "n_items": data.n_items,
                 "n_interactions": data.n_interactions, "fingerprint": data.fingerprint(),
                 "split_fingerprint": split.fingerprint(), "protocol": split.protocol},
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"
