"""One accelerate training loop for every trainable family.

A family supplies a model, a loss function over a batch and a batch iterator per epoch; the loop does
mixed precision, gradient accumulation, clipping, warm-up, validation with early stopping on
recall@10, best-weights restore, resumable checkpoints (accelerate save_state/load_state) and
TensorBoard scalars. Interrupting a run loses at most the epoch in flight.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from tqdm.auto import tqdm

from genrec.runtime import resolve_device, resolve_precision

log = logging.getLogger("genrec")


@dataclass
class TrainResult:
    epochs_run: int = 0
    steps: int = 0
    best_metric: float = float("nan")
    best_epoch: int = -1
    train_time_s: float = 0.0
    history: list[dict] = field(default_factory=list)
    resumed_from_epoch: int = 0
    resumed_time_s: float = 0.0  # training seconds spent before the resume (train_time_s includes them)


def make_accelerator(cfg_train, device: torch.device):
    from accelerate import Accelerator

    mp = resolve_precision(cfg_train.mixed_precision, device)
    from accelerate.state import AcceleratorState, GradientState

    state = AcceleratorState._shared_state
    if state and str(state.get("_mixed_precision", mp)) != mp:
        # several runs in one process (a sweep) may differ in precision: start a fresh accelerator state,
        # keeping the process-group state that `accelerate launch` set up
        AcceleratorState._reset_state()
        GradientState._reset_state()
    return Accelerator(mixed_precision=mp, gradient_accumulation_steps=cfg_train.grad_accum,
                       cpu=device.type == "cpu")


def _tb_writer(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(run_dir / "tb"))
    except Exception:  # noqa: BLE001 - tensorboard is optional
        return None


def train_loop(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, object], torch.Tensor],
    make_batches: Callable[[int], Iterable],
    cfg_train,
    run_dir: str | Path,
    validate: Callable[[torch.nn.Module], float] | None = None,
    device: torch.device | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    steps_per_epoch: int | None = None,
    desc: str = "train",
) -> TrainResult:
    """Train `model` in place; on return it holds the best validated weights.

    make_batches(epoch) yields batches (already on any device: they are moved with .to where they are
    tensors or tuples/dicts of tensors). loss_fn(model, batch) returns a scalar loss. validate(model)
    returns the early-stopping metric (higher is better).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = device or resolve_device()
    acc = make_accelerator(cfg_train, device)
    if optimizer is None:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg_train.lr, weight_decay=cfg_train.weight_decay)
    warm = max(0, cfg_train.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
    model, optimizer, sched = acc.prepare(model, optimizer, sched)
    ckpt = run_dir / "checkpoint"
    best_path = run_dir / "best.pt"
    state_file = run_dir / "train_state.json"
    res = TrainResult()
    bad = 0
    start_epoch = 0
    if state_file.exists() and ckpt.exists():
        st = json.loads(state_file.read_text())
        acc.load_state(str(ckpt))
        start_epoch, res.steps, bad = st["epoch"] + 1, st["steps"], st["bad"]
        res.best_metric, res.best_epoch, res.history = st["best_metric"], st["best_epoch"], st["history"]
        res.train_time_s = res.resumed_time_s = st["train_time_s"]
        res.resumed_from_epoch = start_epoch
        log.info("resuming %s from epoch %d (checkpoint %s)", desc, start_epoch, ckpt)
        if st.get("done"):
            start_epoch = cfg_train.epochs
    tb = _tb_writer(run_dir)
    max_steps = cfg_train.max_steps or math.inf
    for epoch in range(start_epoch, cfg_train.epochs):
        if res.steps >= max_steps:
            break
        t0 = time.perf_counter()
        model.train()
        total, n = torch.zeros((), device=acc.device), 0
        bar = tqdm(make_batches(epoch), total=steps_per_epoch, desc=f"{desc} ep{epoch}",
                   disable=not cfg_train.progress, leave=False)
        for batch in bar:
            batch = _to(batch, acc.device)
            with acc.accumulate(model):
                with acc.autocast():
                    loss = loss_fn(model, batch)
                acc.backward(loss)
                if acc.sync_gradients and cfg_train.grad_clip > 0:
                    acc.clip_grad_norm_(model.parameters(), cfg_train.grad_clip)
                optimizer.step()
                sched.step()
                optimizer.zero_grad(set_to_none=True)
            total += loss.detach()
            n += 1
            if acc.sync_gradients:
                res.steps += 1
            if res.steps >= max_steps:
                break
        mean_loss = float(total) / max(n, 1)  # one host sync per epoch
        res.train_time_s += time.perf_counter() - t0
        rec = {"epoch": epoch, "loss": mean_loss, "steps": res.steps, "time_s": res.train_time_s}
        stop = False
        if validate is not None and cfg_train.eval_every > 0 and (epoch + 1) % cfg_train.eval_every == 0:
            model.eval()
            metric = float(validate(acc.unwrap_model(model)))
            rec["valid_recall@10"] = metric
            if not (metric <= res.best_metric):  # also true for the first (nan) comparison
                res.best_metric, res.best_epoch, bad = metric, epoch, 0
                _atomic_save(acc.unwrap_model(model).state_dict(), best_path)
            else:
                bad += 1
                stop = cfg_train.patience > 0 and bad >= cfg_train.patience
        res.history.append(rec)
        if tb is not None:
            for k, v in rec.items():
                if k != "epoch":
                    tb.add_scalar(f"{desc}/{k}", v, epoch)
        log.info("%s epoch %d: %s", desc, epoch, ", ".join(f"{k}={v:.4g}" for k, v in rec.items() if k != "epoch"))
        res.epochs_run = epoch + 1
        done = stop or epoch + 1 >= cfg_train.epochs or res.steps >= max_steps
        if cfg_train.checkpoint_every and ((epoch + 1) % cfg_train.checkpoint_every == 0 or done):
            _save_state_atomic(acc, ckpt)
            _atomic_json(state_file, {"epoch": epoch, "steps": res.steps, "bad": bad, "best_metric": res.best_metric,
                                      "best_epoch": res.best_epoch, "history": res.history,
                                      "train_time_s": res.train_time_s, "done": done})
        if stop:
            log.info("%s: early stop at epoch %d (best %.4f at epoch %d)", desc, epoch, res.best_metric,
                     res.best_epoch)
            break
    if tb is not None:
        tb.close()
    if best_path.exists():
        acc.unwrap_model(model).load_state_dict(torch.load(best_path, map_location="cpu"))
    res.epochs_run = max(res.epochs_run, len(res.history))
    return res


def _to(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _save_state_atomic(acc, ckpt: Path) -> None:
    """save_state into a fresh folder, then swap it in: a kill never leaves a torn checkpoint."""
    import shutil

    tmp = ckpt.with_name(ckpt.name + ".tmp")
    old = ckpt.with_name(ckpt.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    acc.save_state(str(tmp))
    if ckpt.exists():
        os.replace(ckpt, old)
    os.replace(tmp, ckpt)
    shutil.rmtree(old, ignore_errors=True)


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)
