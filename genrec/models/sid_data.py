"""Token layout and vectorised example building for the SID recommender.

Token space: 0 = pad, 1 = bos (decoder start / prompt separator), then `n_user_tokens` hashed user
tokens, then one block per SID level: level l code c -> offset_l + c.
Training examples are every prefix of each user's training sequence (target s[t], history the up to
`max_history` items before it, t >= 1); an epoch uses all of them, or a seeded random sample of
`examples_per_epoch`. Histories are gathered with index arithmetic on one flat array, never per example.
"""
from __future__ import annotations

import numpy as np
import torch

PAD, BOS = 0, 1
N_SPECIAL = 2
USER_HASH = 2654435761  # Knuth's multiplicative hash constant


def level_offsets(vocab_sizes: list[int], n_user_tokens: int) -> list[int]:
    base = N_SPECIAL + int(n_user_tokens)
    return [base + int(s) for s in np.concatenate([[0], np.cumsum(vocab_sizes)[:-1]])]


def vocab_size_of(vocab_sizes: list[int], n_user_tokens: int) -> int:
    return N_SPECIAL + int(n_user_tokens) + int(sum(vocab_sizes))


def item_token_table(codes: np.ndarray, vocab_sizes: list[int], n_user_tokens: int) -> np.ndarray:
    """[n_items, L] codes -> [n_items, L] token ids (level offsets added). Checks codes fit their level."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or codes.shape[1] != len(vocab_sizes):
        raise ValueError(f"SID codes of shape {codes.shape} do not match {len(vocab_sizes)} levels")
    if codes.size and ((codes < 0).any() or (codes >= np.asarray(vocab_sizes)[None]).any()):
        raise ValueError("SID codes outside [0, vocab_size) of their level")
    return codes + np.asarray(level_offsets(vocab_sizes, n_user_tokens))[None]


def user_token(users: torch.Tensor, n_user_tokens: int) -> torch.Tensor:
    return N_SPECIAL + (users.long() * USER_HASH) % n_user_tokens


def pack_histories(histories: list[np.ndarray], max_len: int) -> torch.LongTensor:
    """Last `max_len` items of each history, left-padded with -1: [B, <= max_len] (no per-row loop)."""
    lens = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    flat = np.concatenate(histories).astype(np.int64) if lens.sum() else np.zeros(0, np.int64)
    ends = np.cumsum(lens)
    return torch.from_numpy(_gather_window(flat, ends - lens, ends, max_len))


def _gather_window(flat: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """Rows flat[max(start, end-width):end], left-padded with -1; columns that are padding in every row
    are dropped here on the host, so the model never trims (a device->host sync) inside a step."""
    width = int(min(width, (ends - starts).max(initial=0)))
    idx = ends[:, None] - width + np.arange(width)[None, :]
    ok = idx >= starts[:, None]
    out = np.full(idx.shape, -1, dtype=np.int64)
    out[ok] = flat[idx[ok]]
    return out


class PrefixExamples:
    """All next-item examples of the training sequences: (user, history window, target item)."""

    def __init__(self, train_seqs: list[np.ndarray], max_history: int):
        lens = np.fromiter((len(s) for s in train_seqs), dtype=np.int64, count=len(train_seqs))
        self.flat = np.concatenate(train_seqs).astype(np.int64) if lens.sum() else np.zeros(0, np.int64)
        starts = np.cumsum(lens) - lens
        n_ex = np.maximum(lens - 1, 0)  # targets at positions 1..n-1
        self.user = np.repeat(np.arange(len(lens)), n_ex)
        self.start = np.repeat(starts, n_ex)
        first = np.repeat(starts + 1 - np.cumsum(np.concatenate([[0], n_ex[:-1]])), n_ex)
        self.target_pos = first + np.arange(int(n_ex.sum()))  # flat index of each example's target
        self.max_history = int(max_history)

    def __len__(self) -> int:
        return len(self.target_pos)

    def build(self, ex: np.ndarray) -> tuple[torch.LongTensor, torch.LongTensor, torch.LongTensor]:
        """Example ids -> (users [B], history items [B, H <= max_history] left-padded with -1, targets [B])."""
        hist = _gather_window(self.flat, self.start[ex], self.target_pos[ex], self.max_history)
        return (torch.from_numpy(self.user[ex]), torch.from_numpy(hist),
                torch.from_numpy(self.flat[self.target_pos[ex]]))

    def epoch_order(self, epoch: int, seed: int, n_sample: int = 0) -> np.ndarray:
        rng = np.random.default_rng([seed, epoch])
        if 0 < n_sample < len(self):
            return rng.choice(len(self), size=n_sample, replace=False)
        return rng.permutation(len(self))

    def batches(self, epoch: int, batch_size: int, seed: int, n_sample: int = 0):
        order = self.epoch_order(epoch, seed, n_sample)
        for i in range(0, len(order), batch_size):
            yield self.build(order[i:i + batch_size])

    def n_batches(self, batch_size: int, n_sample: int = 0) -> int:
        n = min(n_sample, len(self)) if n_sample > 0 else len(self)
        return -(-n // batch_size)
