"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over a user's item-id sequence.

Item ids are shifted by one (0 = padding); sequences are left-padded to `max_len` (cf.max_len, else
data.max_history) so the last position is always the newest item. Pre-LayerNorm blocks (attention with
a causal mask, then a position-wise feed-forward of width cf.mlp_layers[0] or dim), learned positional
embeddings, a final LayerNorm. Training predicts the next item at every position of the training
sequence with cf.loss: softmax (full cross-entropy over the catalogue), sampled_softmax (cf.num_negatives
uniform negatives shared by the batch), bce (the original: one negative per position) or bpr. Batches
are drawn with pooled length bucketing (each pool of 50 batches sorted by length, batch order shuffled)
and trimmed to their longest sequence, so padding costs little. The user
vector used for ranking is the output at the last position; scores are dot products with the item table.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrec.errors import ConfigError
from genrec.models.cf.base import CFModel
from genrec.models.cf.registry import register
from genrec.windows import last_items


def pad_left(histories, length: int) -> np.ndarray:
    """Last `length` items of each history, shifted by +1, left-padded with 0: int64 [B, length]
    (genrec.windows, the one windowing helper; 0 is SASRec's padding id)."""
    return last_items(histories, length, pad=-1, trim=False) + 1


class Block(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int, dropout: float, act: str = "gelu"):
        super().__init__()
        self.heads, self.p = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, ffn), nn.ReLU() if act == "relu" else nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # no attention-weight dropout (CPU cost)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.ff(self.ln2(x)))


class SASRec(CFModel):
    sequential = True

    def __init__(self, cfg, n_users: int, n_items: int, max_len: int = 50, seed: int = 0):
        super().__init__(cfg, n_users, n_items, cfg.max_len or max_len, seed)
        if cfg.adap_tau:
            raise ConfigError("cf.adap_tau needs per-user ids; sasrec represents users by their histories")
        if cfg.dim % cfg.heads:
            raise ConfigError(f"cf.dim ({cfg.dim}) must be divisible by cf.heads ({cfg.heads})")
        d, L = cfg.dim, self.max_len
        self.scale = math.sqrt(d)
        torch.manual_seed(seed)
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.pos_emb = nn.Embedding(L, d)
        nn.init.normal_(self.item_emb.weight, 0, cfg.init_std)
        nn.init.normal_(self.pos_emb.weight, 0, cfg.init_std)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        ffn = (cfg.mlp_layers or [d])[0]
        self.blocks = nn.ModuleList(Block(d, cfg.heads, ffn, cfg.dropout, cfg.ffn_act) for _ in range(cfg.layers))
        self.drop = nn.Dropout(cfg.dropout)
        self.ln = nn.LayerNorm(d)
        self._seqs: torch.Tensor | None = None
        self._rows: torch.Tensor | None = None
        self._lens: torch.Tensor | None = None

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """seq [B, L] of shifted item ids -> hidden states [B, L, d]."""
        n = seq.shape[1]
        valid = seq > 0
        x = self.item_emb(seq) * self.scale + self.pos_emb.weight[-n:][None]  # sqrt(d) scaling as in SASRec
        x = self.drop(x) * valid[..., None]
        causal = torch.ones(n, n, dtype=torch.bool, device=seq.device).tril()
        eye = torch.eye(n, dtype=torch.bool, device=seq.device)
        mask = (causal[None] & valid[:, None, :]) | eye[None]  # a padded query may see itself (no empty rows)
        mask = mask[:, None]  # broadcast over heads
        for blk in self.blocks:
            x = blk(x, mask) * valid[..., None]
        return self.ln(x)

    def tables(self):
        return None, self.item_emb.weight[1:]

    @torch.no_grad()
    def user_embeddings(self, users: torch.Tensor, histories=None) -> torch.Tensor:
        if histories is None:
            raise ValueError("sasrec: user_embeddings needs the users' histories")
        dev = self.item_emb.weight.device
        seq = torch.from_numpy(pad_left(histories, self.max_len)).to(dev)
        return self.encode(seq)[:, -1].float()

    def prepare(self, split) -> None:
        self._seqs = torch.from_numpy(pad_left(split.train, self.max_len + 1))
        self._lens = (self._seqs > 0).sum(1)
        self._rows = torch.from_numpy(np.flatnonzero(self._lens.numpy() >= 2))
        if len(self._rows) == 0:
            raise ConfigError("sasrec: no training sequence has two or more items")

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(len(self._rows) / batch_size)

    def batches(self, epoch: int, batch_size: int):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        self.on_epoch_start(epoch, gen)
        perm = self._rows[torch.randperm(len(self._rows), generator=gen)]
        # pooled length bucketing: sort each pool of 50 batches by length, then shuffle the batch order,
        # and drop the all-padding leading columns of each batch (fewer wasted positions)
        pool = batch_size * 50
        lens = self._lens[perm]
        order = torch.cat([s + torch.argsort(lens[s:s + pool], stable=True) for s in range(0, len(perm), pool)])
        perm = perm[order]
        starts = torch.arange(0, len(perm), batch_size)
        starts = starts[torch.randperm(len(starts), generator=gen)]
        c = self.cfg
        for s in starts.tolist():
            idx = perm[s:s + batch_size]
            seq = self._seqs[idx, self._seqs.shape[1] - int(self._lens[idx].max()):]
            b = {"seq": seq}
            if c.loss == "sampled_softmax" and c.shared_negatives:
                b["neg"] = torch.randint(0, self.n_items, (c.num_negatives,), generator=gen)
            elif c.loss != "softmax":
                b["neg"] = torch.randint(0, self.n_items, (*seq.shape[:1], seq.shape[1] - 1, c.num_negatives),
                                         generator=gen)
            yield b

    def forward(self, batch: dict) -> torch.Tensor:
        seq = batch["seq"]
        inp, tgt = seq[:, :-1], seq[:, 1:]
        valid = inp > 0
        h = self.encode(inp)[valid]
        neg = batch.get("neg")
        if neg is not None and neg.dim() == 3:
            neg = neg[valid]
        return self.vector_loss(h, None, tgt[valid] - 1, neg, self.item_emb.weight[1:])


register("sasrec", SASRec)
