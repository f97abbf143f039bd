"""Token layout and vectorised training batches for the SID recommender.

Token space: 0 = pad, 1 = bos, then `user_tokens` hashed user tokens, then one block per SID level:
level l code c -> offset_l + c.

Two ways to turn the training sequences into batches (`sid_model.train_mode`):
- prefix (PrefixExamples): one example per prefix of each user's training sequence: target s[t] and the
  up to `max_history` items before it (t >= 1). An epoch uses all of them, or a seeded sample of
  `examples_per_epoch`. Every example re-encodes its whole history.
- sequence (SequenceWindows): one window of up to `max_history + 1` consecutive items per user; one
  causal pass over the window gives a next-token loss at every position, so every item of the window
  but the first is a target (all its SID levels). The window is the last `max_history + 1` items
  (`sequence_window: last`) or, for longer sequences, a crop at a seeded random place per epoch
  (`random`). `examples_per_epoch` > 0 samples that many windows (users) per epoch.
Windows are cut with genrec.windows (index arithmetic on one flat array, never a per-row loop).
"""
from __future__ import annotations

import numpy as np
import torch

from genrec.windows import flatten, gather_window, last_items

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
    """Last `max_len` items of each history, left-padded with -1: [B, <= max_len] (host-trimmed)."""
    return torch.from_numpy(last_items(histories, max_len))


def _sample(rng: np.random.Generator, n: int, n_sample: int) -> np.ndarray:
    if 0 < n_sample < n:
        return rng.choice(n, size=n_sample, replace=False)
    return rng.permutation(n)


class PrefixExamples:
    """All next-item examples of the training sequences: (user, history window, target item)."""

    def __init__(self, train_seqs: list[np.ndarray], max_history: int):
        self.flat, starts, ends = flatten(train_seqs)
        n_ex = np.maximum(ends - starts - 1, 0)  # targets at positions 1..n-1
        self.user = np.repeat(np.arange(len(starts)), n_ex)
        self.start = np.repeat(starts, n_ex)
        first = np.repeat(starts + 1 - np.cumsum(np.concatenate([[0], n_ex[:-1]])), n_ex)
        self.target_pos = first + np.arange(int(n_ex.sum()))  # flat index of each example's target
        self.max_history = int(max_history)

    def __len__(self) -> int:
        return len(self.target_pos)

    def build(self, ex: np.ndarray) -> tuple[torch.LongTensor, torch.LongTensor, torch.LongTensor]:
        """Example ids -> (users [B], history items [B, H <= max_history] left-padded with -1, targets [B])."""
        hist = gather_window(self.flat, self.start[ex], self.target_pos[ex], self.max_history)
        return (torch.from_numpy(self.user[ex]), torch.from_numpy(hist),
                torch.from_numpy(self.flat[self.target_pos[ex]]))

    def epoch_order(self, epoch: int, seed: int, n_sample: int = 0) -> np.ndarray:
        return _sample(np.random.default_rng([seed, epoch]), len(self), n_sample)

    def batches(self, epoch: int, batch_size: int, seed: int, n_sample: int = 0):
        order = self.epoch_order(epoch, seed, n_sample)
        for i in range(0, len(order), batch_size):
            yield self.build(order[i:i + batch_size])

    def n_batches(self, batch_size: int, n_sample: int = 0) -> int:
        n = min(n_sample, len(self)) if n_sample > 0 else len(self)
        return -(-n // batch_size)

    def targets_per_epoch(self, n_sample: int = 0) -> int:
        return min(n_sample, len(self)) if n_sample > 0 else len(self)


class SequenceWindows:
    """One window of up to `max_history + 1` consecutive items per user with >= 2 training items."""

    def __init__(self, train_seqs: list[np.ndarray], max_history: int, window: str = "random"):
        if window not in ("last", "random"):
            raise ValueError(f"sequence window must be 'last' or 'random', got {window!r}")
        flat, starts, ends = flatten(train_seqs)
        keep = ends - starts >= 2
        self.flat = flat
        self.user = np.flatnonzero(keep)
        self.start, self.end = starts[keep], ends[keep]
        self.width = int(max_history) + 1
        self.window = window

    def __len__(self) -> int:
        return len(self.user)

    def window_ends(self, epoch: int, seed: int) -> np.ndarray:
        """Exclusive end of each user's window: the sequence end, or a seeded random place (random crops)."""
        if self.window == "last":
            return self.end
        slack = np.maximum(self.end - self.start - self.width, 0)  # crop positions beyond the first
        rng = np.random.default_rng([seed, epoch, 1])
        return self.start + np.minimum(self.end - self.start, self.width) + rng.integers(0, slack + 1)

    def build(self, idx: np.ndarray, ends: np.ndarray) -> tuple[torch.LongTensor, torch.LongTensor]:
        """Window ids -> (users [B], window items [B, W <= max_history + 1] left-padded with -1)."""
        win = gather_window(self.flat, self.start[idx], ends[idx], self.width)
        return torch.from_numpy(self.user[idx]), torch.from_numpy(win)

    def batches(self, epoch: int, batch_size: int, seed: int, n_sample: int = 0):
        ends = self.window_ends(epoch, seed)
        order = _sample(np.random.default_rng([seed, epoch]), len(self), n_sample)
        for i in range(0, len(order), batch_size):
            yield self.build(order[i:i + batch_size], ends)

    def n_batches(self, batch_size: int, n_sample: int = 0) -> int:
        n = min(n_sample, len(self)) if n_sample > 0 else len(self)
        return -(-n // batch_size)

    def targets_per_epoch(self, n_sample: int = 0) -> int:
        """Targets in one epoch (exact for all windows, the mean share of them for a sample)."""
        per = np.minimum(self.end - self.start, self.width) - 1
        n = len(self)
        return int(per.sum()) if not 0 < n_sample < n else int(round(per.sum() * n_sample / n))


class TokenCount:
    """Training tokens and attention work of the SID recommender, counted on the host from the batches
    (CPU tensors, before they move to the device: no device sync). genrec.compute reads extra().

    A token is a real (non-pad) position that goes through a forward and a backward pass:
    - prefix, encoder_decoder: the encoder prompt ([user] + history SID tokens, E positions, each
      attending to all E) and the L decoder positions (causal self-attention over 1..L plus
      cross-attention over E);
    - prefix, decoder_only: [user] + history + BOS + the L target tokens (T positions, causal);
    - sequence: [user] BOS + the window's SID tokens (T positions, causal).
    `context` is the mean attended length per token and per attending layer, so that
    6 x n_layers x context x d_attn x train_tokens is the exact attention count of these sequences."""

    def __init__(self, config):
        self.levels, self.user = config.n_levels, int(config.user_tokens > 0)
        self.encoder_decoder = config.arch == "encoder_decoder"
        self.n_enc = config.num_layers
        self.n_dec = config.num_decoder_layers if self.encoder_decoder else 0
        self.d_attn = config.num_heads * config.d_kv
        self.tokens, self.attended = 0, 0.0  # attended: summed over tokens and layers

    @property
    def n_layers(self) -> int:
        return self.n_enc + self.n_dec

    def add(self, batch) -> None:
        """Count one training batch: (users, history, targets) or (users, windows)."""
        items = (batch[1] >= 0).sum(1).numpy().astype(np.float64)
        L = self.levels
        if self.encoder_decoder:
            enc = self.user + items * L
            self.tokens += int(enc.sum()) + L * len(enc)
            self.attended += self.n_enc * float((enc * enc).sum())
            self.attended += self.n_dec * float((L * (L + 1) / 2 + L * enc).sum())
            return
        extra = 1 + L if len(batch) == 3 else 1  # BOS (+ the target's tokens in prefix mode)
        length = self.user + items * L + extra
        self.tokens += int(length.sum())
        self.attended += self.n_enc * float((length * (length + 1) / 2).sum())

    def extra(self) -> dict:
        context = self.attended / (self.n_layers * self.tokens) if self.tokens else 0.0
        return {"train_tokens": self.tokens, "n_layers": self.n_layers, "context": round(context, 3),
                "d_attn": self.d_attn}
