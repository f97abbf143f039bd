"""Beam search constrained to the sequences of a PrefixTrie, batched over users, with tensor ops only.

Every running beam holds a trie node. Per step the model's log-softmax (over the full vocabulary) is
masked to the children of each beam's node and the best 2K extensions per user are taken (K = beams).
As in HuggingFace's beam search, an extension that ends an item goes to a pool of K finished items when
it ranks among the first K, and the best K extensions that do not end an item keep running; the trie is
prefix-free, so a finished item has nothing left to extend. A user is done when its pool is full and its
worst finished score beats its best running beam (log-probs only fall, so nothing left can enter the
pool), or when no beam runs. The only Python loop is over steps.

Ranking rule (same for every family): with `exclude` (one array of item indices per user, e.g. the
user's history) those items are banned INSIDE the search: a beam is never extended to a node all of
whose items are banned for its user (genrec.decode.ban), so a banned item never enters the pool and no
beam is wasted on a prefix with nothing left to recommend. Every beam then holds at least one allowed
completion, which is why each user gets min(num_beams, allowed items) real, unseen items back.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from genrec.decode.ban import BannedNodes
from genrec.decode.trie import PrefixTrie

NEG_INF = float("-inf")


def check_k(k: int, num_beams: int, where: str = "k") -> None:
    """Top-K lists come from the beams: K must not exceed num_beams."""
    if k < 1:
        raise ValueError(f"{where}={k}: must be >= 1")
    if k > num_beams:
        raise ValueError(f"{where}={k} exceeds num_beams={num_beams}: beam search returns at most num_beams "
                         f"items per user; raise num_beams (sid_model.num_beams) or lower K (eval.ks)")


@torch.no_grad()
def constrained_beam_search(step_fn: Callable[[torch.LongTensor | None, Any], tuple[torch.Tensor, Any]],
                            state: Any, batch_size: int, trie: PrefixTrie, num_beams: int, max_steps: int,
                            reorder_fn: Callable[[Any, torch.LongTensor], Any] | None = None,
                            exclude: Sequence[np.ndarray] | None = None,
                            ) -> tuple[torch.LongTensor, torch.FloatTensor]:
    """Find the `num_beams` most likely items per user under the trie constraint.

    step_fn(tokens [B*num_beams] or None at the first step, state) -> (logits [B*num_beams, V], state).
    reorder_fn(state, beam_index [B*num_beams]) -> state, called before each later step with the flat
    index of the beam each new beam continues (KV-cache reorder; beams never cross users).
    Returns (items [B, num_beams], scores [B, num_beams]) sorted by total log-prob, -1 / -inf where
    fewer than num_beams items could be reached. Tokens fed for dead beams are 0.
    exclude: None, or one array of banned item indices per user (len batch_size); see the module doc.
    """
    if num_beams < 1:
        raise ValueError(f"num_beams={num_beams}: must be >= 1")
    if max_steps < 1:
        raise ValueError(f"max_steps={max_steps}: must be >= 1")
    B, K, V = int(batch_size), int(num_beams), trie.vocab_size
    dev = trie.device
    if exclude is not None and len(exclude) != B:
        raise ValueError(f"exclude has {len(exclude)} entries, expected one per user ({B})")
    banned = BannedNodes.build(trie, exclude) if exclude is not None else None
    row_user = torch.arange(B, device=dev).repeat_interleave(K)
    nodes = torch.zeros(B * K, dtype=torch.long, device=dev)
    nodes.view(B, K)[:, 1:] = -1  # one live beam per user at the start, so the beams stay distinct
    running = torch.full((B, K), NEG_INF, device=dev)
    running[:, 0] = 0.0
    fin_items = torch.full((B, K), -1, dtype=torch.long, device=dev)
    fin_scores = torch.full((B, K), NEG_INF, device=dev)
    user_base = torch.arange(B, device=dev)[:, None] * K
    first_k = torch.arange(2 * K, device=dev) < K
    n_cand = min(2 * K, K * V)
    tokens = None
    for _ in range(max_steps):
        logits, state = step_fn(tokens, state)
        if logits.shape != (B * K, V):
            raise ValueError(f"step_fn returned logits of shape {tuple(logits.shape)}, expected {(B * K, V)}")
        cand = torch.log_softmax(logits.float().to(dev), dim=-1)
        allowed = trie.allowed(nodes) if banned is None else banned.allowed(nodes, row_user)
        cand.add_(running.view(-1, 1)).masked_fill_(~allowed, NEG_INF)
        top, idx = torch.topk(cand.view(B, K * V), n_cand, dim=1)  # best 2K extensions per user
        src = idx // V + user_base  # flat parent beam
        tok = idx % V
        child = trie.advance(nodes[src.view(-1)], tok.view(-1)).view(B, n_cand)
        item = trie.item_at(child.view(-1)).view(B, n_cand)
        ends = (item >= 0) & torch.isfinite(top)
        to_pool = ends & first_k[:n_cand]
        pool_s = torch.cat([fin_scores, torch.where(to_pool, top, torch.full_like(top, NEG_INF))], 1)
        pool_i = torch.cat([fin_items, torch.where(to_pool, item, torch.full_like(item, -1))], 1)
        fin_scores, keep = torch.topk(pool_s, K, dim=1)
        fin_items = torch.gather(pool_i, 1, keep)
        running, pick = torch.topk(torch.where(ends, torch.full_like(top, NEG_INF), top), K, dim=1)  # n_cand >= K
        dead = torch.isinf(running).view(-1)
        nodes = torch.where(dead, torch.full_like(dead, -1, dtype=torch.long), torch.gather(child, 1, pick).view(-1))
        done = torch.isinf(running[:, 0]) | (fin_scores[:, -1] >= running[:, 0])
        if bool(done.all()):
            break
        beam_src = torch.gather(src, 1, pick).view(-1)
        if reorder_fn is not None:
            state = reorder_fn(state, beam_src)
        tokens = torch.where(dead, torch.zeros_like(beam_src), torch.gather(tok, 1, pick).view(-1))
    fin_items = torch.where(torch.isfinite(fin_scores), fin_items, torch.full_like(fin_items, -1))
    return fin_items, fin_scores
