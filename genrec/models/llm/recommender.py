"""Constrained beam search over the token trie of all item titles, with the LM's KV cache.

Users are batched with left padding; the prompt is encoded once, its cache repeated per beam, and each
step feeds one token per beam (the shared `genrec.decode.constrained_beam_search` picks the beams and
the shared cache shim `genrec.decode.cache` repeats / reorders the cache). Decoding settings are explicit
(num_beams, max_steps, no sampling, no length penalty): `generate()` and a model's generation_config are
never used.

Ranking rule: `recommend(users, histories, k, exclude)` bans the `exclude` items (the evaluator passes
the histories when eval.exclude_history is on) inside the beam search, so each list holds
min(k, unseen items) real, unseen titles; nothing is dropped after decoding.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from genrec.decode import PrefixTrie, constrained_beam_search, reorder_cache, repeat_cache
from genrec.errors import ConfigError
from genrec.models.llm.model import LLMRec
from genrec.models.llm.prompts import PromptCodec, history_matrix


class LLMRecommender:
    def __init__(self, rec: LLMRec, codec: PromptCodec, num_beams: int, batch_size: int = 32,
                 autocast_dtype: torch.dtype | None = None, progress: bool = False):
        if num_beams < 1:
            raise ConfigError(f"llm.num_beams: must be >= 1, got {num_beams}")
        self.rec = rec
        self.codec = codec
        self.num_beams = int(num_beams)
        self.batch_size = max(1, int(batch_size))
        self.autocast_dtype = autocast_dtype
        self.progress = progress
        self.device = next(rec.parameters()).device
        self.trie = PrefixTrie.build(codec.target_sequences(), vocab_size=rec.vocab_size).to(self.device)
        self.max_steps = int(codec.tgt_len.max())

    def _tensors(self, batch: dict) -> dict:
        return {k: torch.from_numpy(v).to(self.device) for k, v in batch.items() if k != "labels"}

    def _search(self, hist: np.ndarray, exclude: list[np.ndarray] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, nb = len(hist), self.num_beams
        t = self._tensors(self.codec.collate(hist, pad_left=True))

        def step(tokens, st):
            if tokens is None:
                logits, cache = self.rec.prompt_step(t["input_ids"], t["attention_mask"], t["position_ids"],
                                                     t["soft_items"] if self.rec.projector is not None else None)
                repeat_cache(cache, nb)
                mask = t["attention_mask"].repeat_interleave(nb, 0)
                pos = t["position_ids"][:, -1].repeat_interleave(nb, 0) + 1
                return logits.repeat_interleave(nb, 0), (cache, mask, pos)
            cache, mask, pos = st
            mask = torch.cat([mask, mask.new_ones(len(mask), 1)], 1)
            logits, cache = self.rec.token_step(tokens.to(self.device), mask, pos, cache)
            return logits, (cache, mask, pos + 1)

        def reorder(st, beam_idx):
            cache, mask, pos = st
            beam_idx = beam_idx.to(self.device)
            reorder_cache(cache, beam_idx)
            return cache, mask[beam_idx], pos[beam_idx]

        return constrained_beam_search(step, None, b, self.trie, nb, self.max_steps, reorder_fn=reorder,
                                       exclude=exclude)

    @torch.no_grad()
    def search(self, histories: list[np.ndarray], exclude: list[np.ndarray] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(items [B, num_beams], total log-probs [B, num_beams]) for each history; `exclude`: None or
        one array of banned item indices per history (never returned)."""
        if exclude is not None and len(exclude) != len(histories):
            raise ValueError(f"exclude has {len(exclude)} entries for {len(histories)} histories")
        was_training = self.rec.training
        self.rec.eval()
        items, scores = [], []
        use_ac = self.autocast_dtype is not None
        try:
            rng = range(0, len(histories), self.batch_size)
            for s in tqdm(rng, desc="beam search", disable=not self.progress, leave=False):
                hist = history_matrix(histories[s: s + self.batch_size], self.codec.history_items)
                ex = None if exclude is None else exclude[s: s + self.batch_size]
                with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.bfloat16, enabled=use_ac):
                    it, sc = self._search(hist, ex)
                items.append(it.cpu())
                scores.append(sc.cpu())
        finally:
            self.rec.train(was_training)
        return torch.cat(items), torch.cat(scores)

    def recommend(self, users: torch.Tensor, histories: list[np.ndarray], k: int,
                  exclude: list[np.ndarray] | None = None) -> torch.Tensor:
        """Top-k item indices per user [B, k] (-1 = none), best first, never an `exclude` item."""
        if k > self.num_beams:
            raise ConfigError(f"top-{k} asked but llm.num_beams={self.num_beams}: beam search returns at most "
                              f"num_beams items; raise llm.num_beams or lower eval.ks")
        items, _ = self.search(list(histories), None if exclude is None else list(exclude))
        return items[:, :k]


@torch.no_grad()
def exhaustive_scores(rec: LLMRec, codec: PromptCodec, histories: list[np.ndarray],
                      batch_items: int = 256) -> torch.Tensor:
    """Total log-prob of every item's target sequence for each history, by teacher forcing [B, n_items].

    The reference that beam search must match when num_beams covers the catalogue (tests, small data)."""
    rec.eval()
    dev = next(rec.parameters()).device
    hist = history_matrix(histories, codec.history_items)
    b, n = len(hist), codec.n_items
    out = torch.empty(b, n)
    for s in range(0, n, batch_items):
        items = np.arange(s, min(n, s + batch_items))
        hh = np.repeat(hist, len(items), 0)
        tt = np.tile(items, b)
        t = {k: torch.from_numpy(v).to(dev) for k, v in codec.collate(hh, tt).items()}
        emb = rec.embed(t["input_ids"], t["soft_items"] if rec.projector is not None else None)
        hidden = rec.backbone(inputs_embeds=emb, attention_mask=t["attention_mask"],
                              position_ids=t["position_ids"], use_cache=False).last_hidden_state
        logp = torch.log_softmax(rec.head(hidden[:, :-1]).float(), -1)
        lab = t["labels"][:, 1:]
        tok_lp = logp.gather(-1, lab.clamp(min=0)[..., None])[..., 0] * (lab != -100)
        out[:, s: s + len(items)] = tok_lp.sum(1).view(b, len(items)).cpu()
    return out
