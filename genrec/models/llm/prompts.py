"""Prompts as concatenated token-id tables: every title is tokenised once, batches are built by gathers.

A prompt reads `prefix  item_1 sep item_2 sep ... item_h  suffix` and a training example appends the
target item's token ids plus EOS. Each history item contributes a fixed per-item token sequence (its
title, optionally SID tokens and a soft-token placeholder for CF injection); the pieces are laid out
in padded slots and compacted with one stable argsort per batch (no per-example Python loops).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from genrec.errors import ConfigError, DataError
from genrec.windows import flatten, gather_window, last_items

SENTINEL = "\u2063HISTORY\u2063"  # stands for {history} while a chat template renders the prompt


def pack(seqs: list[list[int]], extra_row: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Ragged int lists -> (ids [n(+1), L] padded with 0, lengths); the extra last row is empty."""
    lens = np.array([len(s) for s in seqs] + ([0] if extra_row else []), dtype=np.int64)
    out = np.zeros((len(lens), max(int(lens.max(initial=0)), 1)), dtype=np.int64)
    if lens.sum():
        rows = np.repeat(np.arange(len(lens)), lens)
        cols = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        out[rows, cols] = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs if len(s)])
    return out, lens


def history_matrix(histories: list[np.ndarray], h: int) -> np.ndarray:
    """The last `h` items of each history, right-aligned in an int64 [B, h] matrix padded with -1."""
    return last_items(histories, h, pad=-1, trim=False)


def layout_of(cfg) -> str:
    """The prompt layout a config uses: llm.prompt_layout, with auto = list for packed training, else template."""
    if cfg.prompt_layout != "auto":
        return cfg.prompt_layout
    return "list" if cfg.train_mode == "packed" else "template"


def unique_titles(titles: list[str]) -> tuple[list[str], int]:
    """Make titles unique by suffixing repeats with ' [2]', ' [3]', ... (returns the count changed)."""
    seen: Counter = Counter()
    out, changed = [], 0
    for t in titles:
        seen[t] += 1
        if seen[t] > 1:
            changed += 1
            t = f"{t} [{seen[t]}]"
        out.append(t)
    return out, changed


@dataclass
class PromptCodec:
    prefix: np.ndarray  # int64 [P]
    suffix: np.ndarray  # int64 [Q]
    sep: np.ndarray  # int64 [S]
    hist_ids: np.ndarray  # [n_items+1, L] per-item history tokens (+ separator in mid); last row empty
    hist_len: np.ndarray
    last_ids: np.ndarray  # the same without the separator (the most recent history item; list layout: same)
    last_len: np.ndarray
    hist_soft: np.ndarray  # [n_items+1, L] bool: the soft-token placeholder slot of each row
    last_soft: np.ndarray
    tgt_ids: np.ndarray  # [n_items+1, T] target tokens + EOS (list layout: + separator)
    tgt_len: np.ndarray
    pad_id: int
    history_items: int
    layout: str = "template"
    packable: bool = False  # list layout and every history piece starts with the item's target tokens

    @property
    def n_items(self) -> int:
        return len(self.tgt_len) - 1

    def target_sequences(self) -> list[list[int]]:
        return [self.tgt_ids[i, : self.tgt_len[i]].tolist() for i in range(self.n_items)]

    def _fixed(self, ids: np.ndarray, b: int) -> tuple:
        shape = (b, len(ids))
        return (np.broadcast_to(ids, shape), np.ones(shape, dtype=bool), np.full(shape, -1, dtype=np.int64),
                np.zeros(shape, dtype=np.int8))

    def _items(self, idx: np.ndarray, ids: np.ndarray, lens: np.ndarray, soft: np.ndarray,
               role: np.ndarray | None = None) -> tuple:
        """The pieces of items idx [B, k] laid out in padded slots: (tokens, valid, soft item, role) [B, k*L]."""
        b = len(idx)
        lm = ids.shape[1]
        val = np.arange(lm) < lens[idx][..., None]
        rol = np.zeros(val.shape, dtype=np.int8) if role is None else role.astype(np.int8)
        return (ids[idx].reshape(b, -1), val.reshape(b, -1),
                np.where(soft[idx], idx[..., None], -1).reshape(b, -1), rol.reshape(b, -1))

    def _compact(self, pieces: list[tuple], pad_left: bool, with_labels: bool) -> dict:
        """Concatenate the pieces, move the valid tokens together (one stable argsort) and build the batch."""
        tok, val, sft, rol = (np.concatenate(x, 1) for x in zip(*pieces))
        width = int(val.sum(1).max())
        order = np.argsort(val if pad_left else ~val, axis=1, kind="stable")
        order = order[:, -width:] if pad_left else order[:, :width]
        tok, val, sft, rol = (np.take_along_axis(x, order, 1) for x in (tok, val, sft, rol))
        out = {"input_ids": np.where(val, tok, self.pad_id), "attention_mask": val.astype(np.int64),
               "position_ids": np.maximum(np.cumsum(val, 1) - 1, 0),
               "soft_items": np.where(val, sft, -1)}
        if with_labels:
            out["labels"] = np.where(val & (rol == 1), tok, -100)
        return out

    def collate(self, hist: np.ndarray, targets: np.ndarray | None = None, pad_left: bool = False) -> dict:
        """hist: int64 [B, h] right-aligned (-1 = none); returns numpy arrays input_ids, attention_mask,
        position_ids, soft_items (item index at soft slots, -1 elsewhere) and labels (-100 off target)."""
        b, n = len(hist), self.n_items
        idx = np.where(hist < 0, n, hist)
        pieces = [self._fixed(self.prefix, b)]
        if hist.shape[1] > 1:
            pieces.append(self._items(idx[:, :-1], self.hist_ids, self.hist_len, self.hist_soft))
        if hist.shape[1] > 0:
            pieces.append(self._items(idx[:, -1:], self.last_ids, self.last_len, self.last_soft))
        pieces.append(self._fixed(self.suffix, b))
        if targets is not None:
            t = np.where(targets < 0, n, targets)[:, None]
            no_soft = np.zeros(self.tgt_ids.shape, dtype=bool)
            role = np.arange(self.tgt_ids.shape[1]) < self.tgt_len[t][..., None]
            pieces.append(self._items(t, self.tgt_ids, self.tgt_len, no_soft, role))
        return self._compact(pieces, pad_left, targets is not None)

    def collate_packed(self, windows: np.ndarray, n_targets: np.ndarray) -> dict:
        """Packed training batch (list layout): windows int64 [B, W] of consecutive items, right-aligned
        (-1 = none); the last n_targets[b] items of row b are targets (labels on their title + separator,
        each conditioned on the items before it in the row). Same keys as collate with targets."""
        if not self.packable:
            raise ConfigError("llm.train_mode=packed: needs llm.prompt_layout list and history items that read "
                              "exactly as the target (sid_tokens: llm.sid_history == llm.sid_target)")
        b, w = windows.shape
        idx = np.where(windows < 0, self.n_items, windows)
        is_target = np.arange(w)[None, :] >= w - np.asarray(n_targets)[:, None]
        role = is_target[..., None] & (np.arange(self.hist_ids.shape[1]) < self.tgt_len[idx][..., None])
        pieces = [self._fixed(self.prefix, b), self._items(idx, self.hist_ids, self.hist_len, self.hist_soft, role)]
        return self._compact(pieces, False, True)


def _ids(tok, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"]) if text else []


def prompt_pieces(tok, template: str, use_chat: bool) -> tuple[list[int], list[int]]:
    """Token ids before and after {history} (with BOS / chat markup where the tokenizer wants them)."""
    if template.count("{history}") != 1:
        raise ConfigError("llm.prompt_template: must contain {history} exactly once")
    if use_chat and getattr(tok, "chat_template", None):
        text = tok.apply_chat_template([{"role": "user", "content": template.replace("{history}", SENTINEL)}],
                                       tokenize=False, add_generation_prompt=True)
        before, after = text.split(SENTINEL)
        return _ids(tok, before), _ids(tok, after)
    before, after = template.split("{history}")
    bos = tok.bos_token_id
    adds_bos = bos is not None and list(tok("a", add_special_tokens=True)["input_ids"][:1]) == [bos]
    return ([bos] if adds_bos else []) + _ids(tok, before), _ids(tok, after)


def item_pieces(tok, titles: list[str], cfg, sid_ids: np.ndarray | None) -> tuple[list[list[int]], list[list[int]]]:
    """(history tokens, target tokens) of every item, before separators / EOS are added."""
    enc = tok([cfg.title_prefix + t for t in titles], add_special_tokens=False)["input_ids"]
    title_ids = [list(x[: cfg.max_title_tokens]) for x in enc]
    if any(len(x) == 0 for x in title_ids):
        raise DataError("item titles: some titles tokenise to nothing (empty data.title_template output?)")
    if sid_ids is None:
        return title_ids, title_ids
    sids = [list(r) for r in sid_ids]
    hist = [(t if cfg.sid_history != "sid" else []) + (s if cfg.sid_history != "title" else [])
            for t, s in zip(title_ids, sids)]
    return hist, sids if cfg.sid_target == "sid" else title_ids


def check_targets(tgts: list[list[int]], cfg, sid: bool, ends_with: str) -> None:
    """Target sequences must be unique and none a prefix of another (beam search ends at a trie leaf)."""
    dup = len(tgts) - len({tuple(t) for t in tgts})
    if dup:
        what = "SIDs" if sid else f"titles (raise llm.max_title_tokens={cfg.max_title_tokens}?)"
        raise DataError(f"{dup} items share their target token sequence: {what} must be unique per item")
    ordered = sorted(tuple(t) for t in tgts)  # a prefix sorts right before the sequences that extend it
    for a, b in zip(ordered, ordered[1:]):
        if b[: len(a)] == a:
            raise DataError(f"one item's target tokens + {ends_with} are a prefix of another's: pick an "
                            f"llm.history_separator that no title contains (now {cfg.history_separator!r})")


def build_codec(tok, titles: list[str], cfg, soft_token: bool = False,
                sid_ids: np.ndarray | None = None) -> PromptCodec:
    """Tokenise every title once and lay out the per-item tables.

    sid_ids: int64 [n_items, L] token ids of each item's SID tokens (variant sid_tokens); cfg.sid_history
    and cfg.sid_target then choose what history items and targets read as. Template layout: history
    pieces are `item soft sep` (the last one `item soft`), targets `item EOS`. List layout: every history
    piece is `item sep soft` and targets `item sep`, so a packed row is a run of history pieces.
    """
    eos = tok.eos_token_id
    if eos is None:
        raise ConfigError(f"llm.model: tokenizer of {cfg.model!r} has no EOS token")
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    hist, tgt_src = item_pieces(tok, titles, cfg, sid_ids)
    prefix, suffix = prompt_pieces(tok, cfg.prompt_template, cfg.use_chat_template)
    sep = _ids(tok, cfg.history_separator)
    soft = [pad] if soft_token else []
    layout = layout_of(cfg)
    if layout == "list":
        if not sep:
            raise ConfigError("llm.history_separator: must not be empty with the list prompt layout "
                              "(it ends every title)")
        suffix, tgts = [], [list(t) + sep for t in tgt_src]
        mid = last = [h + sep + soft for h in hist]
        soft_at = [len(h) + len(sep) for h in hist]
    else:
        tgts = [list(t) + [eos] for t in tgt_src]
        mid, last = [h + soft + sep for h in hist], [h + soft for h in hist]
        soft_at = [len(h) for h in hist]
    check_targets(tgts, cfg, sid_ids is not None and cfg.sid_target == "sid",
                  "separator" if layout == "list" else "EOS")
    mid_ids, mid_len = pack(mid)
    last_ids, last_len = pack(last)

    def soft_mask(ids_len, ln):  # the placeholder slot of each item's piece
        m = np.zeros(ids_len.shape, dtype=bool)
        if soft_token:
            pos = np.array(soft_at + [0])
            rows = np.flatnonzero(ln > 0)
            m[rows, pos[rows]] = True
        return m

    tgt_ids, tgt_len = pack(tgts)
    packable = layout == "list" and all(m[: len(t)] == t for m, t in zip(mid, tgts))
    return PromptCodec(np.array(prefix, dtype=np.int64), np.array(suffix, dtype=np.int64),
                       np.array(sep, dtype=np.int64), mid_ids, mid_len, last_ids, last_len,
                       soft_mask(mid_ids, mid_len), soft_mask(last_ids, last_len), tgt_ids, tgt_len,
                       int(pad), cfg.history_items, layout, packable)


def _train_seqs(train: list[np.ndarray], max_users: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    seqs = train[:max_users] if max_users > 0 else train
    flat, starts, ends = flatten(list(seqs))
    if len(flat) == 0:
        raise DataError("split: no training interactions for the LLM family")
    return flat, starts, ends


def training_examples(train: list[np.ndarray], h: int, max_users: int = 0,
                      targets_per_user: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(history [N, h] right-aligned, target [N], user [N]) for every (prefix -> next) pair, vectorised.

    max_users keeps the first N users; targets_per_user keeps each user's last N pairs (0 = all)."""
    flat, starts, ends = _train_seqs(train, max_users)
    lens = ends - starts
    user = np.repeat(np.arange(len(lens)), lens)
    pos = np.arange(len(flat)) - starts[user]
    keep = pos >= 1
    if targets_per_user > 0:
        keep &= pos >= lens[user] - targets_per_user
    tpos = np.flatnonzero(keep)
    hist = gather_window(flat, starts[user[tpos]], tpos, h, pad=-1, trim=False)
    return hist, flat[tpos], user[tpos]


def packed_examples(train: list[np.ndarray], h: int, min_context: int = 1, max_users: int = 0,
                    targets_per_user: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(windows [N, h+1] right-aligned, n_targets [N], user [N]) for packed training, vectorised.

    A user's target positions are those with at least `min_context` items before them (with
    targets_per_user, only the last N); they are cut, from the end, into runs of h + 1 - min_context
    and each run gets one window that also holds the items before it, up to h + 1 items in all. So every
    target position is a target exactly once, and sees between min_context and h items before it."""
    if not 1 <= min_context <= h:
        raise ConfigError(f"llm.min_context: must be in [1, llm.history_items={h}], got {min_context}")
    flat, starts, ends = _train_seqs(train, max_users)
    lens = ends - starts
    first = np.full(len(lens), min_context, dtype=np.int64)
    if targets_per_user > 0:
        first = np.maximum(first, lens - targets_per_user)
    n_tgt = np.maximum(lens - first, 0)
    stride = h + 1 - min_context
    n_win = -(-n_tgt // stride)
    if n_win.sum() == 0:
        raise DataError(f"split: no user has more than llm.min_context={min_context} training items")
    user = np.repeat(np.arange(len(lens)), n_win)
    k = np.arange(int(n_win.sum())) - np.repeat(np.cumsum(n_win) - n_win, n_win)  # window k from the end
    w_end = ends[user] - k * stride
    t_lo = np.maximum(w_end - stride, starts[user] + first[user])
    windows = gather_window(flat, starts[user], w_end, h + 1, pad=-1, trim=False)
    return windows, w_end - t_lo, user
