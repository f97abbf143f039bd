"""Per-user banned items for the constrained beam search (the ranking rule's history exclusion).

A trie node is *dead* for a user when every item under it is banned for that user: a banned item's own
end node, and any prefix all of whose completions are banned. The beam search never extends a beam to a
dead node, so a banned item never enters the finished pool and no beam is spent on a prefix that cannot
yield an allowed item. Dead nodes are found with tensor ops: walk each banned item's end node up to the
root (one step per depth), count per (user, node) the banned items below it, and compare with the
node's item count (`PrefixTrie.items_under`). They are kept as sorted keys user * n_nodes + node and
queried with one `searchsorted`, so memory is O(banned items x depth), never users x nodes.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from genrec.decode.trie import PrefixTrie


class BannedNodes:
    """Dead (user, node) pairs of one batch of users; users are the batch rows 0 .. B-1."""

    def __init__(self, trie: PrefixTrie, dead_keys: torch.LongTensor):
        self.trie = trie
        self.dead_keys = dead_keys  # sorted user * n_nodes + node

    @classmethod
    def build(cls, trie: PrefixTrie, exclude: Sequence[np.ndarray | Sequence[int] | None]) -> "BannedNodes":
        """exclude: one array of item indices per user (None / empty = nothing banned; ids outside the
        catalogue and repeats are ignored)."""
        n_items, n_nodes, dev = trie.n_items, trie.n_nodes, trie.device
        lens = [0 if e is None else len(e) for e in exclude]
        flat = [np.asarray(e, dtype=np.int64).reshape(-1) for e in exclude if e is not None and len(e)]
        items = torch.from_numpy(np.concatenate(flat)) if flat else torch.zeros(0, dtype=torch.long)
        users = torch.repeat_interleave(torch.arange(len(lens)), torch.as_tensor(lens, dtype=torch.long))
        ok = (items >= 0) & (items < n_items)
        pairs = torch.unique(users[ok] * n_items + items[ok]).to(dev)
        users, nodes = pairs // n_items, trie.item_nodes()[pairs % n_items]
        keys = []
        while nodes.numel():  # leaf -> root, one depth per pass
            keys.append(users * n_nodes + nodes)
            nodes = trie.parent(nodes)
            live = nodes >= 0
            users, nodes = users[live], nodes[live]
        keys = torch.cat(keys) if keys else torch.zeros(0, dtype=torch.long, device=dev)
        uniq, count = torch.unique(keys, return_counts=True)  # sorted
        dead = count == trie.items_under()[uniq % n_nodes]
        return cls(trie, uniq[dead])

    def is_dead(self, users: torch.LongTensor, nodes: torch.LongTensor) -> torch.BoolTensor:
        """Elementwise: is node dead for user (False for node -1)."""
        if self.dead_keys.numel() == 0:
            return torch.zeros_like(nodes, dtype=torch.bool)
        key = users * self.trie.n_nodes + nodes
        pos = torch.searchsorted(self.dead_keys, key).clamp(max=self.dead_keys.numel() - 1)
        return (self.dead_keys[pos] == key) & (nodes >= 0)

    def allowed(self, nodes: torch.LongTensor, users: torch.LongTensor) -> torch.BoolTensor:
        """Like PrefixTrie.allowed, without the tokens that lead to a node dead for the row's user."""
        trie = self.trie
        rows, edges = trie.children(nodes)
        keep = ~self.is_dead(users.to(trie.device)[rows], edges + 1)
        mask = torch.zeros(len(nodes), trie.vocab_size, dtype=torch.bool, device=trie.device)
        mask[rows[keep], trie.edge_token[edges[keep]]] = True
        return mask
