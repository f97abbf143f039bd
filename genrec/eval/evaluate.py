"""Full-ranking evaluation of any model through one protocol, with ONE ranking rule for every family.

A model exposes either `score(users, histories) -> Tensor[B, n_items]` (higher is better) or
`recommend(users, histories, k, exclude=None) -> Tensor[B, k]` of item indices (-1 = no item).

Ranking rule: this module is the one place that applies history exclusion. With `eval.exclude_history`
on, a score model gets EVERY history item masked before ranking (the target too, when it is in the
history: keeping it would reveal the answer on data with repeats), and a recommend model is called with
`exclude=histories` and must return K real items outside them (generative models ban them inside the
constrained beam search, genrec.decode). So a repeated target is a miss when exclusion is on; how often
that happens is reported as `target_in_history` (share of evaluated users) and `target_in_history_n`.
Nothing is removed from a returned list afterwards. `exclude_window` N > 0 excludes only the last N
history items (the protocol of references that mask the model's input window only); 0 = all of them.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from genrec.eval.metrics import (MISS, greater_ties_from_scores, metrics_from_gt, positions_from_topk,
                                 summarize)


def history_pairs(histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(row, item) of every history entry, flat (vectorised)."""
    lens = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    rows = np.repeat(np.arange(len(histories)), lens)
    cols = np.concatenate(histories).astype(np.int64) if lens.sum() else np.zeros(0, dtype=np.int64)
    return rows, cols


def target_in_history(histories: list[np.ndarray], targets: np.ndarray) -> np.ndarray:
    """[B] bool: is the row's target among its history items."""
    rows, cols = history_pairs(histories)
    hit = np.zeros(len(histories), dtype=bool)
    hit[rows[cols == np.asarray(targets)[rows]]] = True
    return hit


def _score_batch(model, users, hists, tgts, n_items: int, exclude: bool, banned) -> tuple[np.ndarray, np.ndarray]:
    s = model.score(torch.as_tensor(users), hists).float().cpu().numpy()
    if s.shape != (len(users), n_items):
        raise ValueError(f"score() returned shape {s.shape}, expected {(len(users), n_items)}")
    s = np.nan_to_num(s, nan=-np.inf)
    if exclude:
        r, c = history_pairs(banned)
        ok = (c >= 0) & (c < n_items)
        s[r[ok], c[ok]] = -np.inf
    return greater_ties_from_scores(s, tgts)


def _recommend_batch(model, users, hists, tgts, n_items: int, k: int, exclude: bool, banned):
    """(greater, ties, n_invalid, n_returned) for a recommend model."""
    top = model.recommend(torch.as_tensor(users), hists, k, exclude=banned if exclude else None)
    top = top.cpu().numpy() if isinstance(top, torch.Tensor) else np.asarray(top)
    valid = (top >= 0) & (top < n_items)
    invalid = int((~valid & (top != -1)).sum())
    pos = positions_from_topk(top, tgts)
    return pos, np.zeros_like(pos), invalid, int((top != -1).sum())


def process_shard() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed group evaluation is split across; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous block [start, stop) of n users that `rank` of `world` evaluates: blocks differ by at most
    one user, cover every user once, and an empty block is fine (n < world)."""
    per, rest = divmod(n, world)
    start = rank * per + min(rank, rest)
    return start, start + per + (1 if rank < rest else 0)


@torch.no_grad()
def evaluate_part(model, evalset, n_items: int, ks: list[int], exclude_history: bool = True,
                  batch_size: int = 512, progress: bool = False, desc: str = "eval", exclude_window: int = 0,
                  rank: int = 0, world: int = 1) -> dict:
    """Rank `rank`'s block of users: per-user (greater, ties) arrays, their row indices and the counters."""
    lo, hi = shard_bounds(len(evalset), rank, world)
    g_all, t_all = [], []
    invalid = returned = in_hist = 0
    mode = "score" if hasattr(model, "score") else "recommend"
    for start in tqdm(range(lo, hi, batch_size), desc=desc, disable=not progress, leave=False):
        sl = slice(start, min(start + batch_size, hi))
        users, hists, tgts = evalset.users[sl], evalset.histories[sl], evalset.targets[sl]
        banned = [h[-exclude_window:] for h in hists] if exclude_window > 0 else hists
        in_hist += int(target_in_history(banned, tgts).sum())
        if mode == "score":
            g, t = _score_batch(model, users, hists, tgts, n_items, exclude_history, banned)
        else:
            g, t, bad, n = _recommend_batch(model, users, hists, tgts, n_items, max(ks), exclude_history, banned)
            invalid, returned = invalid + bad, returned + n
        g_all.append(g)
        t_all.append(t)
    g = np.concatenate(g_all) if g_all else np.zeros(0, dtype=np.int64)
    t = np.concatenate(t_all) if t_all else np.zeros(0, dtype=np.int64)
    return {"rows": np.arange(lo, hi), "greater": g, "ties": t, "invalid": invalid, "returned": returned,
            "in_hist": in_hist}


def gather_parts(part: dict) -> list[dict]:
    """Every rank's part, gathered once. Unlike a padded tensor gather (which repeats users to even out the
    blocks and so counts them twice), each rank sends exactly its own users."""
    import torch.distributed as dist

    rank, world = process_shard()
    if world == 1:
        return [part]
    parts: list = [None] * world
    dist.all_gather_object(parts, part)
    return parts


def summarize_parts(parts: list[dict], ks: list[int], exclude_history: bool, exclude_window: int) -> dict:
    """The metrics of the union of the parts; raises when a user row appears in two parts."""
    rows = np.concatenate([p["rows"] for p in parts])
    if len(np.unique(rows)) != len(rows):
        raise RuntimeError("sharded evaluation: a user was evaluated by more than one process")
    g = np.concatenate([p["greater"] for p in parts])
    t = np.concatenate([p["ties"] for p in parts])
    invalid, returned = sum(p["invalid"] for p in parts), sum(p["returned"] for p in parts)
    in_hist = sum(p["in_hist"] for p in parts)
    res = summarize(metrics_from_gt(np.minimum(g, MISS), t, ks))
    n_users = int(len(g))
    res["users_evaluated"] = n_users
    res["invalid_rate"] = float(invalid / returned) if returned else 0.0
    res["exclude_history"] = bool(exclude_history)
    res["exclude_window"] = int(exclude_window)
    res["target_in_history"] = float(in_hist / n_users) if n_users else 0.0
    res["target_in_history_n"] = int(in_hist)
    return res


def evaluate(model, evalset, n_items: int, ks: list[int], exclude_history: bool = True,
             batch_size: int = 512, progress: bool = False, desc: str = "eval", exclude_window: int = 0,
             sharded: bool | None = None, per_user: dict | None = None) -> dict:
    """Full-ranking metrics of `model` on `evalset`.

    sharded (None = whenever a torch.distributed group of more than one process is up, e.g. a data-parallel
    point under `accelerate launch`): every process ranks its own contiguous block of users and the
    blocks are gathered once, so each user counts exactly once; every process must then call evaluate.
    With one process the result is the same as before sharding existed.
    per_user: a dict to fill with every evaluated user's index ("users"),
    items ranked above the target ("greater") and tied with it ("ties"), in evalset order.
    """
    rank, world = process_shard() if sharded is not False else (0, 1)
    part = evaluate_part(model, evalset, n_items, ks, exclude_history, batch_size, progress and rank == 0, desc,
                         exclude_window, rank, world)
    parts = gather_parts(part) if world > 1 else [part]
    if per_user is not None:
        rows = np.concatenate([p["rows"] for p in parts])
        order = np.argsort(rows, kind="stable")
        per_user.update(users=np.asarray(evalset.users)[rows[order]],
                        greater=np.concatenate([p["greater"] for p in parts])[order],
                        ties=np.concatenate([p["ties"] for p in parts])[order])
    return summarize_parts(parts, ks, exclude_history, exclude_window)
