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
    b = len(histories)
    out = np.full((b, h), -1, dtype=np.int64)
    lens = np.array([len(x) for x in histories], dtype=np.int64)
    if h <= 0 or lens.sum() == 0:
        return out
    flat = np.concatenate([np.asarray(x, dtype=np.int64) for x in histories])
    k = np.minimum(lens, h)
    within = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)
    src = np.repeat(np.cumsum(lens) - k, k) + within
    out[np.repeat(np.arange(b), k), h - np.repeat(k, k) + within] = flat[src]
    return out


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
    last_ids: np.ndarray  # the same without the separator (the most recent history item)
    last_len: np.ndarray
    hist_soft: np.ndarray  # [n_items+1, L] bool: the soft-token placeholder slot of each row
    last_soft: np.ndarray
    tgt_ids: np.ndarray  # [n_items+1, T] target tokens + EOS
    tgt_len: np.ndarray
    pad_id: int
    history_items: int

    @property
    def n_items(self) -> int:
        return len(self.tgt_len) - 1

    def target_sequences(self) -> list[list[int]]:
        return [self.tgt_ids[i, : self.tgt_len[i]].tolist() for i in range(self.n_items)]

    def collate(self, hist: np.ndarray, targets: np.ndarray | None = None, pad_left: bool = False) -> dict:
        """hist: int64 [B, h] right-aligned (-1 = none); returns numpy arrays input_ids, attention_mask,
        position_ids, soft_items (item index at soft slots, -1 elsewhere) and labels (-100 off target)."""
        b = len(hist)
        n = self.n_items
        idx = np.where(hist < 0, n, hist)
        toks, valid, soft, role = [], [], [], []

        def add(t, v, s=None, r=0):
            toks.append(t)
            valid.append(v)
            soft.append(np.full(t.shape, -1, dtype=np.int64) if s is None else s)
            role.append(np.full(t.shape, r, dtype=np.int8))

        ones = lambda a: np.ones((b, len(a)), dtype=bool)  # noqa: E731
        add(np.broadcast_to(self.prefix, (b, len(self.prefix))), ones(self.prefix))
        if hist.shape[1] > 1:
            mid = idx[:, :-1]
            lm = self.hist_ids.shape[1]
            add(self.hist_ids[mid].reshape(b, -1),
                (np.arange(lm) < self.hist_len[mid][..., None]).reshape(b, -1),
                np.where(self.hist_soft[mid], mid[..., None], -1).reshape(b, -1))
        if hist.shape[1] > 0:
            last = idx[:, -1]
            add(self.last_ids[last], np.arange(self.last_ids.shape[1]) < self.last_len[last][:, None],
                np.where(self.last_soft[last], last[:, None], -1))
        add(np.broadcast_to(self.suffix, (b, len(self.suffix))), ones(self.suffix))
        if targets is not None:
            t = np.where(targets < 0, n, targets)
            add(self.tgt_ids[t], np.arange(self.tgt_ids.shape[1]) < self.tgt_len[t][:, None], r=1)
        tok, val, sft, rol = (np.concatenate(x, 1) for x in (toks, valid, soft, role))
        width = int(val.sum(1).max())
        order = np.argsort(val if pad_left else ~val, axis=1, kind="stable")
        order = order[:, -width:] if pad_left else order[:, :width]
        tok, val, sft, rol = (np.take_along_axis(x, order, 1) for x in (tok, val, sft, rol))
        out = {"input_ids": np.where(val, tok, self.pad_id), "attention_mask": val.astype(np.int64),
               "position_ids": np.maximum(np.cumsum(val, 1) - 1, 0),
               "soft_items": np.where(val, sft, -1)}
        if targets is not None:
            out["labels"] = np.where(val & (rol == 1), tok, -100)
        return out


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


def build_codec(tok, titles: list[str], cfg, soft_token: bool = False,
                sid_ids: np.ndarray | None = None) -> PromptCodec:
    """Tokenise every title once and lay out the per-item tables.

    sid_ids: int64 [n_items, L] token ids of each item's SID tokens (variant sid_tokens); cfg.sid_history
    and cfg.sid_target then choose what history items and targets read as.
    """
    eos = tok.eos_token_id
    if eos is None:
        raise ConfigError(f"llm.model: tokenizer of {cfg.model!r} has no EOS token")
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    enc = tok([cfg.title_prefix + t for t in titles], add_special_tokens=False)["input_ids"]
    title_ids = [list(x[: cfg.max_title_tokens]) for x in enc]
    if any(len(x) == 0 for x in title_ids):
        raise DataError("item titles: some titles tokenise to nothing (empty data.title_template output?)")
    sids = [list(r) for r in sid_ids] if sid_ids is not None else None
    use_sid = sids is not None
    hist = [(t if not use_sid or cfg.sid_history != "sid" else []) + (s if use_sid and cfg.sid_history != "title" else [])
            for t, s in zip(title_ids, sids or [[]] * len(title_ids))]
    tgt_src = sids if use_sid and cfg.sid_target == "sid" else title_ids
    tgts = [list(t) + [eos] for t in tgt_src]
    dup = len(tgts) - len({tuple(t) for t in tgts})
    if dup:
        what = "SIDs" if tgt_src is sids else f"titles (raise llm.max_title_tokens={cfg.max_title_tokens}?)"
        raise DataError(f"{dup} items share their target token sequence: {what} must be unique per item")
    prefix, suffix = prompt_pieces(tok, cfg.prompt_template, cfg.use_chat_template)
    sep = _ids(tok, cfg.history_separator)
    soft = [pad] if soft_token else []
    mid_ids, mid_len = pack([h + soft + sep for h in hist])
    last_ids, last_len = pack([h + soft for h in hist])

    def soft_mask(ids_len, ln):  # the placeholder sits right after the item's own tokens
        m = np.zeros(ids_len.shape, dtype=bool)
        if soft_token:
            pos = np.array([len(h) for h in hist] + [0])
            rows = np.flatnonzero(ln > 0)
            m[rows, pos[rows]] = True
        return m

    tgt_ids, tgt_len = pack(tgts)
    return PromptCodec(np.array(prefix, dtype=np.int64), np.array(suffix, dtype=np.int64),
                       np.array(sep, dtype=np.int64), mid_ids, mid_len, last_ids, last_len,
                       soft_mask(mid_ids, mid_len), soft_mask(last_ids, last_len), tgt_ids, tgt_len,
                       int(pad), cfg.history_items)


def training_examples(train: list[np.ndarray], h: int, max_users: int = 0,
                      targets_per_user: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(history [N, h] right-aligned, target [N], user [N]) for every (prefix -> next) pair, vectorised.

    max_users keeps the first N users; targets_per_user keeps each user's last N pairs (0 = all)."""
    seqs = train[:max_users] if max_users > 0 else train
    lens = np.array([len(s) for s in seqs], dtype=np.int64)
    if lens.sum() == 0:
        raise DataError("split: no training interactions for the LLM family")
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs if len(s)])
    starts = np.cumsum(lens) - lens
    user = np.repeat(np.arange(len(seqs)), lens)
    pos = np.arange(len(flat)) - starts[user]
    keep = pos >= 1
    if targets_per_user > 0:
        keep &= pos >= lens[user] - targets_per_user
    tpos = np.flatnonzero(keep)
    off = np.arange(-h, 0)
    src = tpos[:, None] + off[None, :]
    ok = (pos[tpos][:, None] + off[None, :]) >= 0
    hist = np.where(ok, flat[np.clip(src, 0, None)], -1)
    return hist, flat[tpos], user[tpos]
