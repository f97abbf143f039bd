"""Full-ranking evaluation of any model through one protocol.

A model exposes either `score(users, histories) -> Tensor[B, n_items]` (higher is better) or
`recommend(users, histories, k) -> Tensor[B, k]` of item indices (-1 = no item). History items are
masked when `eval.exclude_history` is on (the target itself is never masked; how often the target
was in the history is reported as `target_in_history`).
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from genrec.eval.metrics import (MISS, greater_ties_from_scores, metrics_from_gt, positions_from_topk,
                                 summarize)


def history_mask_indices(histories: list[np.ndarray], targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row/col indices of history items to mask, without the row's target (vectorised)."""
    lens = np.array([len(h) for h in histories])
    rows = np.repeat(np.arange(len(histories)), lens)
    cols = np.concatenate(histories) if len(rows) else np.zeros(0, dtype=np.int64)
    keep = cols != np.repeat(targets, lens)
    return rows[keep], cols[keep]


@torch.no_grad()
def evaluate(model, evalset, n_items: int, ks: list[int], exclude_history: bool = True,
             batch_size: int = 512, progress: bool = False, desc: str = "eval") -> dict:
    g_all, t_all = [], []
    invalid = 0
    returned = 0
    in_hist = 0
    mode = "score" if hasattr(model, "score") else "recommend"
    kmax = max(ks)
    it = range(0, len(evalset), batch_size)
    for start in tqdm(it, desc=desc, disable=not progress, leave=False):
        sl = slice(start, start + batch_size)
        users = evalset.users[sl]
        hists = evalset.histories[sl]
        tgts = evalset.targets[sl]
        lens = np.array([len(h) for h in hists])
        rows = np.repeat(np.arange(len(hists)), lens)
        cols = np.concatenate(hists) if len(rows) else np.zeros(0, dtype=np.int64)
        in_hist += int(np.unique(rows[cols == np.repeat(tgts, lens)]).size)
        if mode == "score":
            s = model.score(torch.as_tensor(users), hists).float().cpu().numpy()
            if s.shape != (len(users), n_items):
                raise ValueError(f"score() returned shape {s.shape}, expected {(len(users), n_items)}")
            s = np.nan_to_num(s, nan=-np.inf)
            if exclude_history:
                r, c = history_mask_indices(hists, tgts)
                s[r, c] = -np.inf
            g, t = greater_ties_from_scores(s, tgts)
        else:
            top = model.recommend(torch.as_tensor(users), hists, kmax).cpu().numpy()
            valid = (top >= 0) & (top < n_items)
            invalid += int((~valid & (top != -1)).sum())
            returned += int((top != -1).sum())
            if exclude_history:
                top = _drop_history(top, hists, tgts)
            pos = positions_from_topk(top, tgts)
            g, t = pos, np.zeros_like(pos)
        g_all.append(g)
        t_all.append(t)
    g = np.concatenate(g_all)
    t = np.concatenate(t_all)
    res = summarize(metrics_from_gt(np.minimum(g, MISS), t, ks))
    res["users_evaluated"] = int(len(g))
    res["invalid_rate"] = float(invalid / returned) if returned else 0.0
    res["exclude_history"] = bool(exclude_history)
    res["target_in_history"] = in_hist
    return res


def _drop_history(top: np.ndarray, hists: list[np.ndarray], tgts: np.ndarray) -> np.ndarray:
    """Remove history items (except the target) from each list, keeping order; pad with -1."""
    r, c = history_mask_indices(hists, tgts)
    n = int(max(top.max(initial=0), c.max(initial=0))) + 1
    mask = np.zeros((len(top), n), dtype=bool)
    mask[r, c] = True
    drop = (top < 0) | mask[np.arange(len(top))[:, None], np.clip(top, 0, None)]
    order = np.argsort(drop, axis=1, kind="stable")
    out = np.take_along_axis(top, order, 1)
    out[np.take_along_axis(drop, order, 1)] = -1
    return out
