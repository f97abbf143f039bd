"""Leaderboard CSVs: one row per (run, seed), appended atomically under an exclusive file lock.

A row is written with a single write() on an O_APPEND descriptor while holding flock, so concurrent
writers never interleave and a kill leaves either the whole row or none of it. The header is the
fixed COLUMNS list; anything else goes into the `extra` JSON column.
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import subprocess
import time
from pathlib import Path

KS = (5, 10, 20, 50)
METRIC_COLS = [f"{m}@{k}" for m in ("recall", "ndcg", "mrr") for k in KS]
COLUMNS = [
    "run_id", "status", "sweep", "point", "family", "model", "dataset", "split_protocol", "eval_split",
    "exclude_history", "seed", "data_fraction",
    # axes
    "encoder", "quantizer", "sid_levels", "sid_codebook", "sid_latent", "rec_arch", "rec_layers", "rec_d_model",
    "rec_heads", "rec_d_ff", "inject", "cf_dim", "cf_loss", "cf_variant", "llm_model", "lora_rank", "llm_variant",
    # sizes
    "params_total", "params_non_embedding", "params_trainable",
    *METRIC_COLS, "invalid_rate", "users_evaluated",
    # tokenizer stats
    "collision_rate", "codebook_util", "codebook_perplexity", "recon_error",
    # cost and provenance
    "train_time_s", "eval_time_s", "peak_mem_mb", "device", "n_users", "n_items", "n_interactions",
    "data_fingerprint", "git_commit", "git_dirty", "versions", "timestamp", "config", "extra",
]


def git_state() -> tuple[str, bool]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=5).stdout.strip())
        return commit or "unknown", dirty
    except Exception:  # noqa: BLE001
        return "unknown", False


def package_versions() -> str:
    import importlib.metadata as md

    out = {}
    for p in ("torch", "transformers", "peft", "sentence-transformers", "faiss-cpu", "accelerate"):
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    return json.dumps(out, sort_keys=True)


def axes_of(cfg) -> dict:
    """The axis columns a config sets, by family (blank where an axis does not apply)."""
    fam = cfg.run.family
    row = {"family": fam, "model": cfg.run.model, "seed": cfg.run.seed, "data_fraction": cfg.data.data_fraction,
           "exclude_history": cfg.eval.exclude_history, "eval_split": cfg.eval.split}
    if fam == "sid":
        s, m = cfg.sid, cfg.sid_model
        row.update(encoder=cfg.encoder.name, quantizer=s.quantizer, sid_levels=s.levels, sid_codebook=s.codebook_size,
                   sid_latent=s.latent_dim, rec_arch=m.arch, rec_layers=m.num_layers, rec_d_model=m.d_model,
                   rec_heads=m.num_heads, rec_d_ff=m.d_ff, inject=m.inject)
    elif fam == "cf":
        c = cfg.cf
        variant = "+".join(v for v, on in (("directspec", c.directspec), ("adap_tau", c.adap_tau),
                                           ("normalized", c.normalize and not c.adap_tau),
                                           (f"multi{c.num_embeddings}", c.num_embeddings > 1)) if on) or "plain"
        row.update(cf_dim=c.dim, cf_loss=c.loss, cf_variant=variant)
        if cfg.run.model in ("lightgcn", "sgl", "sasrec"):
            row["rec_layers"] = c.layers
    elif fam == "llm":
        row.update(llm_model=cfg.llm.model, lora_rank=cfg.llm.lora_rank, llm_variant=cfg.llm.variant)
    return row


def make_row(cfg, result: dict, sweep: str = "", point: str = "", status: str = "ok") -> dict:
    from genrec.config import to_dict

    commit, dirty = git_state()
    m = result.get("metrics", {})
    d = result.get("data", {})
    extra = dict(result.get("extra", {}))
    row = {c: "" for c in COLUMNS}
    row.update(axes_of(cfg))
    row.update({k: v for k, v in result.get("params", {}).items() if k in COLUMNS})
    row.update({k: m[k] for k in METRIC_COLS + ["invalid_rate", "users_evaluated"] if k in m})
    for k in ("collision_rate", "codebook_util", "codebook_perplexity", "recon_error"):
        if k in extra:
            row[k] = extra.pop(k)
    row.update(run_id=result.get("run_id", ""), status=status, sweep=sweep, point=point,
               dataset=d.get("name", cfg.data.source), split_protocol=d.get("protocol", cfg.data.split),
               train_time_s=_r(result.get("train_time_s")), eval_time_s=_r(result.get("eval_time_s")),
               peak_mem_mb=_r(result.get("peak_mem_mb")), device=result.get("device", ""),
               n_users=d.get("n_users", ""), n_items=d.get("n_items", ""), n_interactions=d.get("n_interactions", ""),
               data_fingerprint=d.get("fingerprint", ""), git_commit=commit, git_dirty=dirty,
               versions=package_versions(), timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"),
               config=json.dumps(to_dict(cfg), sort_keys=True), extra=json.dumps(extra, sort_keys=True, default=str))
    return row


def _r(x):
    return "" if x is None else round(float(x), 3)


def _format(row: dict, columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([_cell(row.get(c, "")) for c in columns])
    return buf.getvalue()


def _cell(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def append_row(path: str | Path, row: dict) -> None:
    """Append one row atomically (header first if the file is new); safe across processes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        columns = COLUMNS
        data = ""
        if size == 0:
            data = _format({c: c for c in COLUMNS}, COLUMNS)
        else:
            with open(path, newline="") as f:
                header = next(csv.reader(f), None)
            if header:
                columns = header
            unknown = {k: v for k, v in row.items() if k not in columns and v not in ("", None)}
            if unknown and "extra" in columns:
                extra = json.loads(row.get("extra") or "{}")
                extra.update(unknown)
                row = {**row, "extra": json.dumps(extra, sort_keys=True, default=str)}
        data += _format(row, columns)
        os.write(fd, data.encode())
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_rows(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def done_run_ids(path: str | Path) -> set[str]:
    return {r["run_id"] for r in read_rows(path) if r.get("status") == "ok"}
