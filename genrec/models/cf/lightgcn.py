"""LightGCN (He et al., SIGIR 2020): id embeddings propagated over the symmetric-normalised user-item
graph D^-1/2 A D^-1/2 (no weights, no non-linearity); the representation is the mean of layers 0..L.

The training edge list is a buffer, so a saved model carries its graph and scores identically after
from_pretrained. Propagation runs once per training step over the whole graph (sparse matmul) and once
per evaluation (cached while the model is in eval mode).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from genrec.models.cf.base import CFModel
from genrec.models.cf.registry import register


def normalized_adjacency(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int,
                         keep: torch.Tensor | None = None) -> torch.Tensor:
    """Sparse (n_users + n_items)^2 matrix D^-1/2 A D^-1/2 of the bipartite graph (optionally a subset of edges)."""
    if keep is not None:
        users, items = users[keep], items[keep]
    n = n_users + n_items
    rows = torch.cat([users, items + n_users])
    cols = torch.cat([items + n_users, users])
    deg = torch.bincount(rows, minlength=n).float()
    dinv = deg.clamp(min=1).pow(-0.5)
    vals = dinv[rows] * dinv[cols]
    with warnings.catch_warnings():  # "sparse CSR support is in beta" / invariant-check notices
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n)).coalesce().to_sparse_csr()


# The normalised adjacency is symmetric (both directions of every edge, weight dinv[u] dinv[i] each way), so
# the gradient of A @ x is A @ grad. PyTorch's own backward of a CSR product builds A's transpose on every
# call, which costs more than the product itself at small widths (an ML-1M LightGCN step at d=64: 6.7x
# slower). Module switch for the benchmark (benchmarks/speed_spmm.py), not a setting.
SYMMETRIC_BACKWARD = True


# Column blocks on the CPU: a CSR product reads one row of x per stored entry. When x is larger than the
# caches (ML-1M at d=2048: 9746 x 2048 fp32 = 80 MB) those reads go to memory; multiplying SPMM_BLOCK
# columns at a time keeps the slice of x in cache (`python benchmarks/speed.py --only block`: LightGCN on
# ML-1M 1.4x faster at d=1024, 2.3x at d=2048). Each output column is the same sum in the same order, so
# the result is unchanged. An x that a last-level cache holds (under SPMM_BLOCK_MIN_BYTES) is multiplied
# in one call: blocking it costs more than it saves (ML-100K at d=2048, 21 MB: 0.91x on a 32 MB L3).
# SPMM_BLOCK = 0: off (a module switch for the benchmark).
SPMM_BLOCK = 64
SPMM_BLOCK_MIN_BYTES = 24 << 20


def spmm(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """adj @ x (sparse CSR @ dense), in column blocks of SPMM_BLOCK on the CPU when x is large."""
    width = x.shape[1]
    if (x.device.type != "cpu" or SPMM_BLOCK <= 0 or width <= SPMM_BLOCK
            or x.numel() * x.element_size() < SPMM_BLOCK_MIN_BYTES):
        return torch.sparse.mm(adj, x)
    return torch.cat([torch.sparse.mm(adj, x[:, c:c + SPMM_BLOCK].contiguous())
                      for c in range(0, width, SPMM_BLOCK)], dim=1)


class _SymmetricSpMM(torch.autograd.Function):
    """adj @ x for a symmetric sparse adj, with the backward adj @ grad (no transpose)."""

    @staticmethod
    def forward(ctx, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return spmm(adj, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, spmm(ctx.adj, grad)


def propagate(adj: torch.Tensor, emb: torch.Tensor, layers: int) -> torch.Tensor:
    """Mean of the layer outputs over a symmetric adjacency (normalized_adjacency); the sparse products
    run in fp32 (sparse CSR matmul has no bf16 kernel on the CPU, and autocast would ask for one)."""
    product = _SymmetricSpMM.apply if SYMMETRIC_BACKWARD else torch.sparse.mm
    with torch.autocast(emb.device.type, enabled=False):
        out = x = emb.float()
        for _ in range(layers):
            x = product(adj, x)
            out = out + x
    return out / (layers + 1)


class LightGCN(CFModel):
    def __init__(self, cfg, n_users: int, n_items: int, max_len: int = 50, seed: int = 0):
        super().__init__(cfg, n_users, n_items, max_len, seed)
        self.emb = nn.Embedding(n_users + n_items, cfg.dim)
        with torch.no_grad():
            self.emb.weight.normal_(0, cfg.init_std, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("edge_users", torch.zeros(0, dtype=torch.long))
        self.register_buffer("edge_items", torch.zeros(0, dtype=torch.long))
        self._adj = None

    def set_graph(self, users: np.ndarray, items: np.ndarray) -> None:
        key = np.unique(users.astype(np.int64) * self.n_items + items)  # one edge per (user, item)
        dev = self.emb.weight.device
        self.edge_users = torch.from_numpy(key // self.n_items).to(dev)
        self.edge_items = torch.from_numpy(key % self.n_items).to(dev)
        self._adj = None

    def _prepare_load(self, state: dict) -> None:
        self.edge_users = torch.zeros_like(state["edge_users"])
        self.edge_items = torch.zeros_like(state["edge_items"])
        self._adj = None

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._adj = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def prepare(self, split) -> None:
        super().prepare(split)
        self.set_graph(*self._pairs)

    def adjacency(self) -> torch.Tensor:
        dev = self.emb.weight.device
        if self._adj is None or self._adj.device != dev:
            if len(self.edge_users) == 0:
                raise RuntimeError(f"{self.name}: no graph; call fit() or set_graph() first")
            self._adj = normalized_adjacency(self.edge_users.cpu(), self.edge_items.cpu(), self.n_users,
                                             self.n_items).to(dev)
        return self._adj

    def tables(self, adj: torch.Tensor | None = None):
        w = self.emb.weight
        out = propagate(self.adjacency() if adj is None else adj, w.float(), self.cfg.layers)
        return out[: self.n_users], out[self.n_users:]


register("lightgcn", LightGCN)
