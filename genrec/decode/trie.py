"""A prefix trie over token sequences in CSR layout, queried with tensor ops only.

Node 0 is the root; every other node is the end of one distinct prefix. Nodes are numbered depth by
depth, and inside a depth by (parent, token), so edge e (sorted by the key parent * V + token) leads to
node e + 1. That gives, with no dense n_nodes x V table:

* `indptr[n] .. indptr[n+1]`: the edges (children) of node n, their tokens in `edge_token`;
* `advance`: one `searchsorted` of parent * V + token in the sorted edge keys;
* `allowed`: a [N, V] mask filled by one scatter over the children of all queried nodes.

Memory is O(n_nodes): an LLM title trie of ~40k nodes over a 49k vocabulary costs a few hundred KB.
"""
from __future__ import annotations

import numpy as np
import torch


class PrefixTrie:
    """Sequence i = the token ids of item i; `item_at(node)` gives i back at the node ending sequence i."""

    def __init__(self, indptr: torch.Tensor, edge_token: torch.Tensor, edge_key: torch.Tensor,
                 node_item: torch.Tensor, node_depth: torch.Tensor, vocab_size: int):
        self.indptr = indptr  # [n_nodes + 1]
        self.edge_token = edge_token  # [n_nodes - 1]; edge e leads to node e + 1
        self.edge_key = edge_key  # [n_nodes - 1], sorted: parent * V + token
        self.node_item = node_item  # [n_nodes], item index or -1
        self.node_depth = node_depth  # [n_nodes]
        self.vocab_size = int(vocab_size)

    @property
    def n_nodes(self) -> int:
        return int(self.node_item.shape[0])

    @property
    def n_items(self) -> int:
        return int((self.node_item >= 0).sum())

    @property
    def max_depth(self) -> int:
        return int(self.node_depth.max()) if self.n_nodes else 0

    @property
    def device(self) -> torch.device:
        return self.indptr.device

    # ------------------------------------------------------------------ build

    @classmethod
    def build(cls, sequences: list[list[int]] | np.ndarray, vocab_size: int) -> "PrefixTrie":
        """Build from item token sequences (vectorised per depth). Raises ValueError on duplicates,
        empty sequences, tokens outside [0, vocab_size) or a sequence that is a prefix of another."""
        V = int(vocab_size)
        if V <= 0:
            raise ValueError(f"PrefixTrie.build: vocab_size must be > 0, got {vocab_size}")
        if isinstance(sequences, (np.ndarray, torch.Tensor)):
            arr = np.asarray(sequences.cpu() if isinstance(sequences, torch.Tensor) else sequences)
            if arr.ndim != 2:
                raise ValueError(f"PrefixTrie.build: expected a 2-D array [n_items, length], got shape {arr.shape}")
            lens = np.full(len(arr), arr.shape[1], dtype=np.int64)
            pad = arr.astype(np.int64)
        else:
            lens = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
            width = int(lens.max()) if len(lens) else 0
            flat = np.fromiter((t for s in sequences for t in s), dtype=np.int64, count=int(lens.sum()))
            pad = np.full((len(lens), width), -1, dtype=np.int64)
            pad[np.arange(width)[None, :] < lens[:, None]] = flat
        n = len(lens)
        if n == 0:
            raise ValueError("PrefixTrie.build: no sequences")
        if (lens == 0).any():
            raise ValueError(f"PrefixTrie.build: sequence {int(np.flatnonzero(lens == 0)[0])} is empty")
        valid = np.arange(pad.shape[1])[None, :] < lens[:, None]
        bad = valid & ((pad < 0) | (pad >= V))
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ValueError(f"PrefixTrie.build: sequence {i} has token {pad[i, j]} at position {j}, "
                             f"outside [0, {V})")
        node_of = np.zeros(n, dtype=np.int64)  # current node of each sequence (root)
        keys, tokens, depths = [], [], [np.zeros(1, np.int64)]
        next_id = 1
        for d in range(pad.shape[1]):
            live = np.flatnonzero(lens > d)
            k = node_of[live] * V + pad[live, d]
            uk, inv = np.unique(k, return_inverse=True)  # sorted, so parents ascend within the depth
            keys.append(uk)
            tokens.append(uk % V)
            depths.append(np.full(len(uk), d + 1, np.int64))
            node_of[live] = next_id + inv.reshape(-1)
            next_id += len(uk)
        n_nodes = next_id
        edge_key = np.concatenate(keys)
        parent = edge_key // V
        indptr = np.searchsorted(parent, np.arange(n_nodes + 1), side="left").astype(np.int64)
        node_item = np.full(n_nodes, -1, dtype=np.int64)
        end = node_of  # node that ends each sequence
        uniq, first, counts = np.unique(end, return_index=True, return_counts=True)
        if (counts > 1).any():
            node = uniq[counts > 1][0]
            dup = np.flatnonzero(end == node)[:2]
            raise ValueError(f"PrefixTrie.build: sequences {dup[0]} and {dup[1]} are identical")
        has_children = indptr[end + 1] > indptr[end]
        if has_children.any():
            i = int(np.flatnonzero(has_children)[0])
            raise ValueError(f"PrefixTrie.build: sequence {i} is a prefix of another sequence "
                             f"(end titles with EOS to make them prefix-free)")
        node_item[end] = np.arange(n)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        return cls(t(indptr), t(np.concatenate(tokens)), t(edge_key), t(node_item),
                   t(np.concatenate(depths)), V)

    def to(self, device) -> "PrefixTrie":
        return PrefixTrie(self.indptr.to(device), self.edge_token.to(device), self.edge_key.to(device),
                          self.node_item.to(device), self.node_depth.to(device), self.vocab_size)

    # ------------------------------------------------------------------ queries (nodes may be -1 = dead)

    def num_children(self, nodes: torch.LongTensor) -> torch.LongTensor:
        safe = nodes.clamp(min=0)
        cnt = self.indptr[safe + 1] - self.indptr[safe]
        return torch.where(nodes >= 0, cnt, torch.zeros_like(cnt))

    def children(self, nodes: torch.LongTensor) -> tuple[torch.LongTensor, torch.LongTensor]:
        """Every (row, edge) pair with edge a child edge of nodes[row], flat; edge e leads to node e + 1."""
        nodes = nodes.to(self.device).long()
        cnt = self.num_children(nodes)
        total = int(cnt.sum())
        rows = torch.repeat_interleave(torch.arange(len(nodes), device=self.device), cnt, output_size=total)
        starts = torch.cumsum(cnt, 0) - cnt  # first slot of each row in the flat child list
        first_edge = self.indptr[nodes.clamp(min=0)]
        edges = torch.arange(total, device=self.device) - starts[rows] + first_edge[rows]
        return rows, edges

    def allowed(self, nodes: torch.LongTensor) -> torch.BoolTensor:
        """[N] node ids -> [N, V] mask of the tokens that extend each node's prefix (all False for -1)."""
        rows, edges = self.children(nodes)
        mask = torch.zeros(len(nodes), self.vocab_size, dtype=torch.bool, device=self.device)
        mask[rows, self.edge_token[edges]] = True
        return mask

    def parent(self, nodes: torch.LongTensor) -> torch.LongTensor:
        """Parent of each node; -1 for the root (and for -1)."""
        nodes = nodes.to(self.device).long()
        par = self.edge_key[(nodes - 1).clamp(min=0)] // self.vocab_size
        return torch.where(nodes > 0, par, torch.full_like(par, -1))

    def items_under(self) -> torch.LongTensor:
        """[n_nodes] number of items whose sequence passes through each node (1 at an item's end node)."""
        if getattr(self, "_items_under", None) is None:
            count = (self.node_item >= 0).long()
            all_nodes = torch.arange(self.n_nodes, device=self.device)
            for d in range(self.max_depth, 0, -1):  # children before parents: one scatter per depth
                at = all_nodes[self.node_depth == d]
                count.index_add_(0, self.parent(at), count[at])
            self._items_under = count
        return self._items_under

    def item_nodes(self) -> torch.LongTensor:
        """[n_items] the node that ends each item's sequence."""
        if getattr(self, "_item_nodes", None) is None:
            ends = torch.nonzero(self.node_item >= 0).flatten()
            out = torch.empty(self.n_items, dtype=torch.long, device=self.device)
            out[self.node_item[ends]] = ends
            self._item_nodes = out
        return self._item_nodes

    def advance(self, nodes: torch.LongTensor, tokens: torch.LongTensor) -> torch.LongTensor:
        """Child of each node along each token; -1 where the edge does not exist (or the node is -1)."""
        nodes = nodes.to(self.device).long()
        tokens = tokens.to(self.device).long()
        key = nodes * self.vocab_size + tokens
        if self.edge_key.numel() == 0:
            return torch.full_like(nodes, -1)
        pos = torch.searchsorted(self.edge_key, key).clamp(max=self.edge_key.numel() - 1)
        ok = (self.edge_key[pos] == key) & (nodes >= 0) & (tokens >= 0) & (tokens < self.vocab_size)
        return torch.where(ok, pos + 1, torch.full_like(pos, -1))

    def item_at(self, nodes: torch.LongTensor) -> torch.LongTensor:
        """Item index if the node ends an item's sequence, else -1 (also for node -1)."""
        nodes = nodes.to(self.device).long()
        it = self.node_item[nodes.clamp(min=0)]
        return torch.where(nodes >= 0, it, torch.full_like(it, -1))

    def lookup(self, sequences: torch.LongTensor) -> torch.LongTensor:
        """[N, L] token sequences (-1 padded) -> item index or -1: walk the trie column by column."""
        nodes = torch.zeros(len(sequences), dtype=torch.long, device=self.device)
        seq = sequences.to(self.device).long()
        for j in range(seq.shape[1]):
            tok = seq[:, j]
            step = self.advance(nodes, tok)
            nodes = torch.where(tok >= 0, step, nodes)
        return self.item_at(nodes)

    def __repr__(self) -> str:
        return (f"PrefixTrie(items={self.n_items}, nodes={self.n_nodes}, vocab={self.vocab_size}, "
                f"max_depth={self.max_depth})")
