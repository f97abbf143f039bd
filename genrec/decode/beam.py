"""Beam search constrained to the sequences of a PrefixTrie, batched over users, with tensor ops only.

Every beam holds a trie node. Per step the model's log-softmax (over the full vocabulary) is masked
to the children of each beam's node; a beam whose node ends an item is finished and competes with
one extra candidate column that keeps its score unchanged. The only Python loop is over steps.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

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
                            ) -> tuple[torch.LongTensor, torch.FloatTensor]:
    """Find the `num_beams` most likely items per user under the trie constraint.

    step_fn(tokens [B*num_beams] or None at the first step, state) -> (logits [B*num_beams, V], state).
    reorder_fn(state, beam_index [B*num_beams]) -> state, called before each later step with the flat
    index of the beam each new beam continues (KV-cache reorder; beams never cross users).
    Returns (items [B, num_beams], scores [B, num_beams]) sorted by total log-prob, -1 / -inf where
    fewer than num_beams items could be reached. Tokens fed for finished or dead beams are 0.
    """
    if num_beams < 1:
        raise ValueError(f"num_beams={num_beams}: must be >= 1")
    if max_steps < 1:
        raise ValueError(f"max_steps={max_steps}: must be >= 1")
    B, K, V = int(batch_size), int(num_beams), trie.vocab_size
    dev = trie.device
    nodes = torch.zeros(B * K, dtype=torch.long, device=dev)
    scores = torch.full((B, K), NEG_INF, device=dev)
    scores[:, 0] = 0.0  # one live beam per user at the start, so the beams stay distinct
    nodes.view(B, K)[:, 1:] = -1
    user_base = torch.arange(B, device=dev).repeat_interleave(K) * K
    tokens = None
    for _ in range(max_steps):
        logits, state = step_fn(tokens, state)
        if logits.shape != (B * K, V):
            raise ValueError(f"step_fn returned logits of shape {tuple(logits.shape)}, expected {(B * K, V)}")
        cand = torch.log_softmax(logits.float().to(dev), dim=-1)
        cand.add_(scores.view(-1, 1)).masked_fill_(~trie.allowed(nodes), NEG_INF)
        top, idx = torch.topk(cand.view(B, K * V), K, dim=1)  # best K extensions per user
        done = (trie.item_at(nodes) >= 0).view(B, K)
        keep = torch.where(done, scores, torch.full_like(scores, NEG_INF))  # finished beams keep their score
        top, pick = torch.topk(torch.cat([top, keep], 1), K, dim=1)
        beam_ids = torch.arange(K, device=dev).expand(B, K)
        idx = torch.gather(torch.cat([idx, K * V + beam_ids], 1), 1, pick)
        stay = (idx >= K * V).view(-1)
        src = torch.where(idx >= K * V, idx - K * V, idx // V).view(-1) + user_base  # flat parent beam
        tok = torch.where(stay, torch.full_like(stay, V, dtype=torch.long), (idx % V).view(-1))
        parent = nodes[src]
        nodes = torch.where(stay, parent, trie.advance(parent, tok))
        dead = torch.isinf(top.view(-1))
        nodes = torch.where(dead, torch.full_like(nodes, -1), nodes)
        scores = top
        if bool(((trie.item_at(nodes) >= 0) | dead).all()):
            break
        if reorder_fn is not None:
            state = reorder_fn(state, src)
        tokens = torch.where(stay | dead, torch.zeros_like(tok), tok)
    items = trie.item_at(nodes).view(B, K)
    scores = torch.where(items >= 0, scores, torch.full_like(scores, NEG_INF))
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    items = torch.gather(items, 1, order)
    scores = torch.gather(scores, 1, order)
    return items, scores
