"""One accelerate training loop for every trainable family.

A family supplies a model, a loss function over a batch and a batch iterator per epoch; the loop does
mixed precision, gradient accumulation, clipping, warm-up, validation with early stopping on
recall@10, best-weights restore, resumable checkpoints (accelerate save_state/load_state) and
tracking through accelerate's trackers (TensorBoard by default: per-step loss and learning rate, per-epoch
validation, the resolved config as hyper-parameters). Interrupting a run loses at most the epoch in flight.

Data-parallel: under `accelerate launch --num_processes N` (process-group variables kept, e.g. `genrec sweep
--parallel data`) the model is wrapped by Accelerator.prepare (DDP: gradients all-reduced), every process
takes every N-th batch of the family's batch stream (the same number on each), validation is sharded across
processes and gathered (genrec.eval.evaluate), the early-stopping metric is rank 0's, broadcast, and only
rank 0 writes checkpoints, best weights and tracker files. train.batch_size is per process.
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

from genrec.identity import flatten_config as flat_hparams  # the trackers' hyper-parameters
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


KNOWN_TRACKERS = ("tensorboard", "wandb", "mlflow")
_warned: set[str] = set()
# accelerate's routine INFO lines on every checkpoint ("Saving current state", "Model weights saved", ...)
QUIET_LOGGERS = ("accelerate.accelerator", "accelerate.checkpointing", "accelerate.tracking")


def quiet_accelerate() -> None:
    """Raise accelerate's checkpoint/tracker loggers to WARNING unless someone set their level already."""
    for name in QUIET_LOGGERS:
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.WARNING)


def available_trackers(names) -> list[str]:
    """The asked-for trackers that are installed; one warning per process for each one that is not."""
    from accelerate.utils import is_mlflow_available, is_tensorboard_available, is_wandb_available

    found = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available, "mlflow": is_mlflow_available}
    out = []
    for name in names or []:
        name = str(name).lower()
        if name in found and found[name]():
            out.append(name)
        elif name not in _warned:
            _warned.add(name)
            why = "not installed" if name in found else f"unknown (known: {', '.join(KNOWN_TRACKERS)})"
            log.warning("train.trackers: %r is %s; training goes on without it", name, why)
    return out


def make_accelerator(cfg_train, device: torch.device, run_dir: str | Path | None = None):
    """The Accelerator of one training run; with run_dir, trackers (train.trackers) log under run_dir/tb."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    quiet_accelerate()
    mp = resolve_precision(cfg_train.mixed_precision, device)
    state = AcceleratorState._shared_state
    if state and str(state.get("_mixed_precision", mp)) != mp:
        # several runs in one process (a sweep) may differ in precision: start a fresh accelerator state,
        # keeping the process-group state that `accelerate launch` set up
        AcceleratorState._reset_state()
        GradientState._reset_state()
    trackers = available_trackers(getattr(cfg_train, "trackers", [])) if run_dir is not None else []
    return Accelerator(mixed_precision=mp, gradient_accumulation_steps=cfg_train.grad_accum,
                       cpu=device.type == "cpu", log_with=trackers or None,
                       project_dir=str(Path(run_dir) / "tb") if run_dir is not None else None)


def run_hparams(cfg_train, run_dir: Path) -> dict:
    """The resolved config of the run (config.yaml of the run folder, found in run_dir or up to two folders
    above it), flattened; else the train section alone."""
    import dataclasses

    import yaml

    for folder in (run_dir, *list(run_dir.parents)[:2]):
        f = folder / "config.yaml"
        if f.is_file():
            try:
                return flat_hparams(yaml.safe_load(f.read_text()) or {})
            except (OSError, yaml.YAMLError):
                break
    d = dataclasses.asdict(cfg_train) if dataclasses.is_dataclass(cfg_train) else dict(vars(cfg_train))
    return flat_hparams({"train": d})


def start_tracking(acc, cfg_train, run_dir: Path, desc: str, hparams: dict | None) -> None:
    if not acc.log_with:
        return
    acc.init_trackers("genrec", config=hparams if hparams is not None else run_hparams(cfg_train, run_dir),
                      init_kwargs={"wandb": {"name": desc, "dir": str(run_dir)}, "mlflow": {"run_name": desc}})


def end_tracking(acc) -> None:
    """Close the trackers. accelerate's end_training also destroys the process group, which the evaluation
    and the next points of a data-parallel sweep still need: there only the trackers are finished."""
    if acc.num_processes > 1:
        for tracker in acc.trackers:
            tracker.finish()
    else:
        acc.end_training()


def shard_batches(batches: Iterable, rank: int, world: int):
    """Every `world`-th batch from `rank` on, the same number on every rank: batches are read in groups of
    `world` and an incomplete last group is dropped (at most world-1 batches an epoch), so that the
    gradient all-reduce never waits for a rank that has run out. One process: the stream unchanged."""
    if world <= 1:
        yield from batches
        return
    group = []
    for b in batches:
        group.append(b)
        if len(group) == world:
            yield group[rank]
            group = []


def start_process_group() -> None:
    """Under a launcher (RANK / WORLD_SIZE set), set up the torch.distributed group now (accelerate's
    PartialState: gloo on the CPU, NCCL on GPUs, each rank on its local GPU)."""
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available())


def broadcast_value(acc, value: float) -> float:
    """Rank 0's value on every rank (the same early-stopping decision everywhere)."""
    if acc.num_processes <= 1:
        return value
    from accelerate.utils import broadcast

    t = torch.tensor([value], dtype=torch.float64, device=acc.device)
    return float(broadcast(t, from_process=0).item())


@dataclass
class _Loop:
    """What one train_loop call carries between its epochs."""

    acc: object
    model: torch.nn.Module
    optimizer: object
    sched: object
    cfg: object
    run_dir: Path
    desc: str
    res: TrainResult = field(default_factory=TrainResult)
    bad: int = 0
    extras: dict = field(default_factory=dict)  # train_loop's extra_state

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.pt"

    @property
    def ckpt(self) -> Path:
        return self.run_dir / "checkpoint"

    @property
    def state_file(self) -> Path:
        return self.run_dir / "train_state.json"


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
    hparams: dict | None = None,
    extra_state: dict | None = None,
) -> TrainResult:
    """Train `model` in place; on return it holds the best validated weights.

    make_batches(epoch) yields batches (already on any device: they are moved with .to where they are
    tensors or tuples/dicts of tensors). loss_fn(model, batch) returns a scalar loss. validate(model)
    returns the early-stopping metric (higher is better); under data parallelism every process calls it.
    hparams: what the trackers record as hyper-parameters (default: the run folder's config.yaml).
    extra_state: {name: object with state_dict() / load_state_dict()}: training state outside the model and
    optimizer (Adap-tau's loss statistics), saved in every checkpoint and restored on resume; an object's
    sync() method, if it has one, is called on every process before a checkpoint.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = device or resolve_device()
    acc = make_accelerator(cfg_train, device, run_dir)
    if optimizer is None:
        params = [p for p in model.parameters() if p.requires_grad]
        # fused: one pass over each parameter instead of several element-wise ones (MF-BPR d=2048 on ML-1M
        # 1.19x faster, benchmarks/speed.py --only adam); None keeps PyTorch's default implementation,
        # whose rounding the committed rows were measured with
        optimizer = torch.optim.AdamW(params, lr=cfg_train.lr, weight_decay=cfg_train.weight_decay,
                                      fused=True if cfg_train.fused_adam else None)
    warm = max(0, cfg_train.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
    model, optimizer, sched = acc.prepare(model, optimizer, sched)
    lp = _Loop(acc, model, optimizer, sched, cfg_train, run_dir, desc, extras=dict(extra_state or {}))
    start_epoch = _resume(lp)
    start_tracking(acc, cfg_train, run_dir, desc, hparams)
    max_steps = cfg_train.max_steps or math.inf
    spe = None if steps_per_epoch is None else steps_per_epoch // acc.num_processes
    last_ckpt = time.monotonic()
    for epoch in range(start_epoch, cfg_train.epochs):
        if lp.res.steps >= max_steps:
            break
        t0 = time.perf_counter()
        batches = shard_batches(make_batches(epoch), acc.process_index, acc.num_processes)
        mean_loss = _train_epoch(lp, loss_fn, batches, epoch, spe, max_steps)
        lp.res.train_time_s += time.perf_counter() - t0
        rec = {"epoch": epoch, "loss": mean_loss, "steps": lp.res.steps, "time_s": lp.res.train_time_s}
        stop = _validate_epoch(lp, validate, epoch, rec)
        lp.res.history.append(rec)
        acc.log({f"{desc}/epoch_{k}" if k in ("loss", "time_s") else f"{desc}/{k}": v
                 for k, v in rec.items() if k not in ("epoch", "steps")}, step=lp.res.steps)
        if acc.is_main_process:
            log.info("%s epoch %d: %s", desc, epoch,
                     ", ".join(f"{k}={v:.4g}" for k, v in rec.items() if k != "epoch"))
        lp.res.epochs_run = epoch + 1
        timed_out = cfg_train.max_time_s > 0 and broadcast_value(acc, lp.res.train_time_s) >= cfg_train.max_time_s
        done = stop or timed_out or epoch + 1 >= cfg_train.epochs or lp.res.steps >= max_steps
        if _checkpoint_due(lp, epoch, done, last_ckpt):
            _checkpoint(lp, epoch, done)
            last_ckpt = time.monotonic()
        if timed_out and not stop:
            rec["stopped"] = "max_time_s"
            break
        if stop:
            if acc.is_main_process:
                log.debug("%s: early stop at epoch %d (best %.4f at epoch %d)", desc, epoch,
                          lp.res.best_metric, lp.res.best_epoch)
            break
    end_tracking(acc)
    acc.wait_for_everyone()  # rank 0 has written best.pt
    if lp.best_path.exists():
        acc.unwrap_model(model).load_state_dict(torch.load(lp.best_path, map_location="cpu"))
    lp.res.epochs_run = max(lp.res.epochs_run, len(lp.res.history))
    return lp.res


def _resume(lp: _Loop) -> int:
    """Load the resumable checkpoint when there is one; returns the first epoch to run."""
    if not (lp.state_file.exists() and lp.ckpt.exists()):
        return 0
    res = lp.res
    st = json.loads(lp.state_file.read_text())
    lp.acc.load_state(str(lp.ckpt))
    _load_extras(lp)
    start_epoch, res.steps, lp.bad = st["epoch"] + 1, st["steps"], st["bad"]
    res.best_metric, res.best_epoch, res.history = st["best_metric"], st["best_epoch"], st["history"]
    res.train_time_s = res.resumed_time_s = st["train_time_s"]
    res.resumed_from_epoch = start_epoch
    log.info("resuming %s from epoch %d (checkpoint %s)", lp.desc, start_epoch, lp.ckpt)
    return lp.cfg.epochs if st.get("done") else start_epoch


def _load_extras(lp: _Loop) -> None:
    if not lp.extras:
        return
    path = lp.ckpt / EXTRA_STATE
    saved = torch.load(path, map_location="cpu", weights_only=True) if path.exists() else {}
    for name, obj in lp.extras.items():
        if name in saved:
            obj.load_state_dict(saved[name])
        else:  # a checkpoint written before genrec saved this state: the run goes on, the state starts afresh
            log.warning("%s: the checkpoint %s has no %r state; it starts afresh (the resumed run can differ "
                        "slightly from an uninterrupted one)", lp.desc, lp.ckpt, name)


def _train_epoch(lp: _Loop, loss_fn, batches, epoch: int, spe: int | None, max_steps: float) -> float:
    """One pass over this process's batches; returns the mean loss (one host sync an epoch, plus one every
    train.log_every optimiser steps when trackers are on)."""
    acc, model, optimizer, cfg, res = lp.acc, lp.model, lp.optimizer, lp.cfg, lp.res
    log_every = getattr(cfg, "log_every", 0) if acc.log_with else 0
    model.train()
    total, n = torch.zeros((), device=acc.device), 0
    bar = tqdm(batches, total=spe, desc=f"{lp.desc} ep{epoch}",
               disable=not cfg.progress or not acc.is_main_process, leave=False)
    for batch in bar:
        batch = _to(batch, acc.device)
        with acc.accumulate(model):
            with acc.autocast():
                loss = loss_fn(model, batch)
            acc.backward(loss)
            if acc.sync_gradients and cfg.grad_clip > 0:
                acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            lp.sched.step()
            optimizer.zero_grad(set_to_none=True)
        total += loss.detach()
        n += 1
        if acc.sync_gradients:
            res.steps += 1
            if log_every and res.steps % log_every == 0:
                acc.log({f"{lp.desc}/loss": float(loss.detach()), f"{lp.desc}/lr": lp.sched.get_last_lr()[0]},
                        step=res.steps)
        if res.steps >= max_steps:
            break
    return float(total) / max(n, 1)


def _validate_epoch(lp: _Loop, validate, epoch: int, rec: dict) -> bool:
    """Validate when due (every process: sharded evaluation), record it; returns True to stop early."""
    cfg, res, acc = lp.cfg, lp.res, lp.acc
    if validate is None or cfg.eval_every <= 0 or (epoch + 1) % cfg.eval_every:
        return False
    lp.model.eval()
    metric = broadcast_value(acc, float(validate(acc.unwrap_model(lp.model))))
    rec["valid_recall@10"] = metric
    if not (metric <= res.best_metric):  # also true for the first (nan) comparison
        res.best_metric, res.best_epoch, lp.bad = metric, epoch, 0
        if acc.is_main_process:
            _atomic_save(acc.unwrap_model(lp.model).state_dict(), lp.best_path)
        return False
    lp.bad += 1
    return cfg.patience > 0 and lp.bad >= cfg.patience


def _checkpoint_due(lp: _Loop, epoch: int, done: bool, last_ckpt: float) -> bool:
    """train.checkpoint_every epochs have passed (or training is done), or train.checkpoint_minutes of wall
    time since the last checkpoint (rank 0's clock, so that every process agrees)."""
    cfg = lp.cfg
    if cfg.checkpoint_every and ((epoch + 1) % cfg.checkpoint_every == 0 or done):
        return True
    if cfg.checkpoint_minutes <= 0:
        return False
    return done or broadcast_value(lp.acc, time.monotonic() - last_ckpt) >= cfg.checkpoint_minutes * 60


def _checkpoint(lp: _Loop, epoch: int, done: bool) -> None:
    res = lp.res
    for obj in lp.extras.values():
        if hasattr(obj, "sync"):
            obj.sync()
    _save_state_atomic(lp.acc, lp.ckpt, {k: v.state_dict() for k, v in lp.extras.items()})
    if lp.acc.is_main_process:
        _atomic_json(lp.state_file, {"epoch": epoch, "steps": res.steps, "bad": lp.bad,
                                     "best_metric": res.best_metric, "best_epoch": res.best_epoch,
                                     "history": res.history, "train_time_s": res.train_time_s, "done": done})
    lp.acc.wait_for_everyone()


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


EXTRA_STATE = "extra_state.pt"  # train_loop's extra_state inside the checkpoint folder


def _save_state_atomic(acc, ckpt: Path, extras: dict | None = None) -> None:
    """save_state (and `extras`, as extra_state.pt) into a fresh folder, then swap it in: a kill never
    leaves a torn checkpoint.

    Data-parallel: rank 0 alone writes (a DDP model is the same on every rank; the other ranks' RNG states
    are not saved, so on resume they continue from their current state). FSDP / DeepSpeed shard the model
    and optimizer, so there every rank writes its shard and rank 0 swaps the folder in."""
    import shutil

    from accelerate.utils import DistributedType

    tmp = ckpt.with_name(ckpt.name + ".tmp")
    old = ckpt.with_name(ckpt.name + ".old")
    sharded = acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    acc.wait_for_everyone()
    if sharded or acc.is_main_process:
        acc.save_state(str(tmp), safe_serialization=False)  # torch.save keeps tied weights without notices
    if extras and acc.is_main_process:
        torch.save(extras, tmp / EXTRA_STATE)
    acc.wait_for_everyone()
    if acc.is_main_process:
        if ckpt.exists():
            os.replace(ckpt, old)
        os.replace(tmp, ckpt)
        shutil.rmtree(old, ignore_errors=True)


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)
