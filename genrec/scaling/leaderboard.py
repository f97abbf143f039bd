"""Leaderboard CSVs: one row per (run, seed), appended atomically under an exclusive file lock.

A row is written with a single write() on an O_APPEND descriptor while holding flock, so concurrent
writers never interleave and a kill leaves either the whole row or none of it. The header is
`columns()` when the file is created: the fixed columns below plus every registered family's axis
columns (genrec.family); anything a file's header lacks goes into the `extra` JSON column.
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
HEAD_COLS = ["run_id", "status", "sweep", "point", "family", "model", "dataset", "split_protocol", "eval_split",
             "exclude_history", "seed", "n_seeds", "data_fraction"]
TAIL_COLS = [
    # sizes
    "params_total", "params_non_embedding", "params_trainable",
    # training compute (genrec.compute: analytic FLOPs, the tokens or examples they count)
    "train_tokens", "train_flops",
    *METRIC_COLS, "invalid_rate", "users_evaluated", "target_in_history",
    # tokenizer stats
    "collision_rate", "codebook_util", "codebook_perplexity", "recon_error",
    # cost and provenance
    "train_time_s", "eval_time_s", "peak_mem_mb", "device", "precision", "n_users", "n_items", "n_interactions",
    "data_fingerprint", "split_fingerprint", "data_source", "git_commit", "git_dirty", "versions", "timestamp",
    "config", "extra",
]


def columns() -> list[str]:
    """The header of a new leaderboard file: fixed columns around every registered family's axes."""
    from genrec.family import axis_columns

    return HEAD_COLS + [c for c in axis_columns() if c not in HEAD_COLS] + TAIL_COLS


_GIT_STATE: tuple[str, bool] | None = None


def git_state() -> tuple[str, bool]:
    """(short commit, dirty) of the code that runs: the git checkout genrec is imported from (not the working
    directory, which may be another checkout or none), read once per process, so that a long sweep's rows
    record the code it started with even if the checkout moves on meanwhile. dirty counts modified tracked
    files and untracked source files alike. ('unknown', False) outside a git checkout."""
    global _GIT_STATE
    if _GIT_STATE is not None:
        return _GIT_STATE
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5, cwd=repo).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", "*.py", "*.yaml",
                                 "*.toml", "*.cfg", "*.sh"], capture_output=True, text=True, timeout=5,
                                cwd=repo).stdout
        _GIT_STATE = (commit or "unknown", bool(status.strip()))
    except Exception:  # noqa: BLE001
        _GIT_STATE = ("unknown", False)
    return _GIT_STATE


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
    """The axis columns a config sets (its family's `axes`), plus the context every row has."""
    from genrec.family import get_family

    row = {"family": cfg.run.family, "model": cfg.run.model, "seed": cfg.run.seed,
           "data_fraction": cfg.data.data_fraction, "exclude_history": cfg.eval.exclude_history,
           "eval_split": cfg.eval.split}
    row.update(get_family(cfg.run.family).axes(cfg))
    return row


def make_row(cfg, result: dict, sweep: str = "", point: str = "", status: str = "ok") -> dict:
    from genrec.config import to_dict

    commit, dirty = git_state()
    m = result.get("metrics", {})
    d = result.get("data", {})
    extra = dict(result.get("extra", {}))
    if result.get("run_dir"):  # where the run's files are (per-user ranks for genrec compare)
        extra.setdefault("run_dir", str(result["run_dir"]))
    cols = columns()
    row = {c: "" for c in cols}
    row.update(axes_of(cfg))
    row.update({k: v for k, v in result.get("params", {}).items() if k in cols})
    row.update({k: m[k] for k in METRIC_COLS + ["invalid_rate", "users_evaluated", "target_in_history"] if k in m})
    for k in ("collision_rate", "codebook_util", "codebook_perplexity", "recon_error"):
        if k in extra:
            row[k] = extra.pop(k)
    row.update(run_id=result.get("run_id", ""), status=status, sweep=sweep, point=point,
               dataset=d.get("name", cfg.data.source), split_protocol=d.get("protocol", cfg.data.split),
               train_time_s=_r(result.get("train_time_s")), eval_time_s=_r(result.get("eval_time_s")),
               peak_mem_mb=_r(result.get("peak_mem_mb")), device=result.get("device", ""),
               n_users=d.get("n_users", ""), n_items=d.get("n_items", ""), n_interactions=d.get("n_interactions", ""),
               data_fingerprint=d.get("fingerprint", ""), split_fingerprint=d.get("split_fingerprint", ""),
               data_source=d.get("source", ""), precision=result.get("precision", ""), n_seeds=1,
               git_commit=commit, git_dirty=dirty,
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
        cols = columns()
        data = ""
        if size == 0:
            data = _format({c: c for c in cols}, cols)
        else:
            with open(path, newline="") as f:
                header = next(csv.reader(f), None)
            if header:
                cols = header
            unknown = {k: v for k, v in row.items() if k not in cols and v not in ("", None)}
            if unknown and "extra" in cols:
                extra = json.loads(row.get("extra") or "{}")
                extra.update(unknown)
                row = {**row, "extra": json.dumps(extra, sort_keys=True, default=str)}
        data += _format(row, cols)
        os.write(fd, data.encode())
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a leaderboard CSV. A torn last row (no line end, a field count other than the
    header's, or a status that is not ok / failed) is ignored with a warning, never counted as a point."""
    import logging

    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        text = f.read()
    records = list(csv.reader(io.StringIO(text)))
    if not records:
        return []
    header, body = records[0], [r for r in records[1:] if r]
    if body:
        last, why = body[-1], ""
        status = last[header.index("status")] if "status" in header and len(last) > header.index("status") else "ok"
        if not text.endswith(("\n", "\r")):
            why = "no line end"
        elif len(last) != len(header):
            why = f"{len(last)} fields, the header has {len(header)}"
        elif status not in ("ok", "failed"):
            why = f"status {status!r}"
        if why:
            logging.getLogger("genrec").warning("%s: ignoring a torn last row (%s); rerun that point", path, why)
            body = body[:-1]
    return [dict(zip(header, r + [""] * (len(header) - len(r)))) for r in body]


def done_run_ids(path: str | Path) -> set[str]:
    return {r["run_id"] for r in read_rows(path) if r.get("status") == "ok"}


def finished_run_ids(path: str | Path, job: str, force: bool = False) -> set[str]:
    """Run ids a sweep need not run (one read of the CSV): those with an ok row (unless `force`), and those
    with any row, ok or failed, from the launch `job` (genrec.scaling.runner.job_token)."""
    out = set()
    for r in read_rows(path):
        extra = r.get("extra") or ""
        if (not force and r.get("status") == "ok") or (job in extra and json.loads(extra).get("job") == job):
            out.add(r["run_id"])
    return out
