"""TIGER-style generative recommender over semantic IDs (model_type genrec_sid_rec; config in configuration.py).

The backbone is built from scratch from a config: T5 (encoder-decoder, arch="encoder_decoder") or a
small Llama (arch="decoder_only"). Input: [user token] + the SID tokens of the last `max_history`
items (left-padded); output: the next item's SID, decoded with the vectorised constrained beam search
(genrec.decode) using the backbone's KV cache, batched over users. The model carries its SID table
(and, for the injection ablation, the frozen per-item vectors) as buffers, so `save_pretrained` /
`from_pretrained` give back a complete recommender: `model.recommend(users, histories, k, exclude)`.

Ranking rule: `exclude` (one array of item indices per user; the evaluator passes the histories when
eval.exclude_history is on) is applied inside the beam search, so each list holds min(k, unseen items)
real, unseen items; the model itself never drops anything after decoding.

Injection (inject_dim > 0): a trainable MLP maps each history item's external vector to d_model and
adds it to each of that item's SID token embeddings.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, T5Config
from transformers import T5ForConditionalGeneration

from genrec.decode import (PrefixTrie, cache_kwarg, check_k, constrained_beam_search, output_cache,
                           reorder_cache, repeat_cache)
from genrec.models.sid.configuration import SIDRecConfig
from genrec.models.sid.data import BOS, PAD, item_token_table, pack_histories, user_token


class SIDRecModel(PreTrainedModel):
    config_class = SIDRecConfig
    base_model_prefix = "sid_rec"
    main_input_name = "hist_items"

    def __init__(self, config: SIDRecConfig):
        super().__init__(config)
        if not config.sid_vocab_sizes or config.n_items <= 0:
            raise ValueError("SIDRecConfig needs sid_vocab_sizes and n_items")
        V, c = config.vocab_size, config
        if c.arch == "encoder_decoder":
            self.backbone = T5ForConditionalGeneration(T5Config(
                vocab_size=V, d_model=c.d_model, d_kv=c.d_kv, d_ff=c.d_ff, num_layers=c.num_layers,
                num_decoder_layers=c.num_decoder_layers, num_heads=c.num_heads, dropout_rate=c.dropout,
                feed_forward_proj=c.feed_forward_proj, pad_token_id=PAD, eos_token_id=BOS,
                decoder_start_token_id=BOS))
        else:
            self.backbone = LlamaForCausalLM(LlamaConfig(
                vocab_size=V, hidden_size=c.d_model, intermediate_size=c.d_ff, num_hidden_layers=c.num_layers,
                num_attention_heads=c.num_heads, num_key_value_heads=c.num_heads, head_dim=c.d_kv,
                attention_dropout=c.dropout, max_position_embeddings=4 * (c.max_history + 1) * (c.n_levels + 1),
                pad_token_id=PAD, bos_token_id=BOS, eos_token_id=BOS, tie_word_embeddings=True))
        self.register_buffer("item_tokens", torch.zeros(c.n_items, c.n_levels, dtype=torch.long))
        if c.inject_dim > 0:
            self.register_buffer("item_vectors", torch.zeros(c.n_items, c.inject_dim))
            self.adapter = nn.Sequential(nn.Linear(c.inject_dim, c.inject_hidden), nn.GELU(),
                                         nn.Linear(c.inject_hidden, c.d_model))
        self._trie: PrefixTrie | None = None
        self._cache_name = cache_kwarg(self.backbone.forward)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def from_codes(cls, codes: np.ndarray, vocab_sizes: list[int], item_vectors: np.ndarray | None = None,
                   config: SIDRecConfig | None = None, **cfg) -> "SIDRecModel":
        """A fresh model for a SID table [n_items, L] (and optional external vectors [n_items, d]), from
        `config` or SIDRecConfig(**cfg); the table fields (sid_vocab_sizes, n_items, inject_dim) are set here."""
        config = SIDRecConfig(**cfg) if config is None else config
        config.sid_vocab_sizes = [int(v) for v in vocab_sizes]
        config.n_items = int(len(codes))
        config.inject_dim = 0 if item_vectors is None else int(item_vectors.shape[1])
        model = cls(config)
        tokens = item_token_table(codes, config.sid_vocab_sizes, config.user_tokens)
        model.item_tokens.copy_(torch.from_numpy(tokens))
        if item_vectors is not None:
            model.item_vectors.copy_(torch.as_tensor(np.asarray(item_vectors), dtype=torch.float32))
        PrefixTrie.build(tokens, config.vocab_size)  # fails early on duplicate SIDs
        return model

    @property
    def trie(self) -> PrefixTrie:
        dev = self.item_tokens.device
        if self._trie is None or self._trie.device != dev:
            self._trie = PrefixTrie.build(self.item_tokens.cpu().numpy(), self.config.vocab_size).to(dev)
        return self._trie

    # ------------------------------------------------------------------ inputs

    def _prompt(self, users: torch.Tensor, hist: torch.Tensor, bos: bool):
        """History items [B, H] (-1 pad, left) -> token ids, attention mask, item index per token ([B, T]).
        Padding only costs compute (positions come from the mask), so callers pass host-trimmed rows.
        bos: after the history (prefix mode: the next item follows BOS), or before it in sequence mode
        ([user] BOS items..., so every prefix of a training window is a prompt)."""
        B, L = hist.shape[0], self.config.n_levels
        ok = hist >= 0
        tok = self.item_tokens[hist.clamp(min=0)]  # [B, H, L]
        tok = torch.where(ok[..., None], tok, torch.full_like(tok, PAD)).reshape(B, -1)
        item = torch.where(ok, hist, torch.full_like(hist, -1))[..., None].expand(-1, -1, L)
        if self.config.train_mode == "sequence":  # injected vector on an item's last token only: in one causal
            item = torch.cat([torch.full_like(item[..., :-1], -1), item[..., -1:]], -1)  # pass its own levels
        item = item.reshape(B, -1)  # must not see it (they are targets), as in prefix examples and decoding
        parts_t, parts_i = [tok], [item]
        if self.config.user_tokens > 0:
            parts_t.insert(0, user_token(users.to(tok.device), self.config.user_tokens)[:, None])
            parts_i.insert(0, torch.full((B, 1), -1, dtype=torch.long, device=tok.device))
        if bos:
            at = len(parts_t) - 1 if self.config.train_mode == "sequence" else len(parts_t)
            parts_t.insert(at, torch.full((B, 1), BOS, dtype=torch.long, device=tok.device))
            parts_i.insert(at, torch.full((B, 1), -1, dtype=torch.long, device=tok.device))
        ids, item = torch.cat(parts_t, 1), torch.cat(parts_i, 1)
        # no trimming of all-padding columns here: that needs a host sync; the data side trims (data.py)
        return ids, (ids != PAD).long(), item

    def _embed(self, ids: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        emb = self.backbone.get_input_embeddings()(ids)
        if self.config.inject_dim > 0:
            vec = self.adapter(self.item_vectors[item.clamp(min=0)].to(emb.dtype))
            emb = emb + vec * (item >= 0)[..., None].to(emb.dtype)
        return emb

    # ------------------------------------------------------------------ training

    def forward(self, users: torch.Tensor, hist_items: torch.Tensor,
                targets: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced cross-entropy of the target items' SID tokens (mean over tokens).
        Without targets, hist_items are training windows: the sequence loss (sequence_loss)."""
        if targets is None:
            return self.sequence_loss(users, hist_items)
        labels = self.item_tokens[targets]  # [B, L]
        if self.config.arch == "encoder_decoder":
            ids, mask, item = self._prompt(users, hist_items, bos=False)
            out = self.backbone(inputs_embeds=self._embed(ids, item), attention_mask=mask, labels=labels)
            return out.loss
        ids, mask, item = self._prompt(users, hist_items, bos=True)
        L = labels.shape[1]
        ids = torch.cat([ids, labels], 1)
        mask = torch.cat([mask, torch.ones_like(labels)], 1)
        item = torch.cat([item, torch.full_like(labels, -1)], 1)
        out = self.backbone(inputs_embeds=self._embed(ids, item), attention_mask=mask,
                            position_ids=(mask.cumsum(1) - 1).clamp(min=0), logits_to_keep=L + 1)
        logits = out.logits[:, :-1]
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1))

    def sequence_loss(self, users: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
        """One causal pass over each window ([user] BOS items, items left-padded with -1): cross-entropy of
        every SID token of every window item but the first, mean over those tokens. Token t of item k is
        predicted from the tokens before it, exactly the prompt + teacher forcing of the prefix example
        (history = the window's items before k, target item k), so this equals the mean of the per-prefix
        losses of the window (each prefix has the same number of tokens)."""
        if self.config.train_mode != "sequence":
            raise ValueError("sequence_loss needs a model with train_mode='sequence' (decoder_only)")
        B, L = windows.shape[0], self.config.n_levels
        ids, mask, item = self._prompt(users, windows, bos=True)
        real = windows >= 0
        target = (real & (real.long().cumsum(1) >= 2))[..., None].expand(-1, -1, L).reshape(B, -1)
        target = torch.cat([target.new_zeros(B, ids.shape[1] - target.shape[1]), target], 1)
        out = self.backbone(inputs_embeds=self._embed(ids, item), attention_mask=mask,
                            position_ids=(mask.cumsum(1) - 1).clamp(min=0))
        logits = out.logits[:, :-1]
        labels = ids[:, 1:].masked_fill(~target[:, 1:], -100)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                           ignore_index=-100)

    @torch.no_grad()
    def item_logprob(self, users: torch.Tensor, hist: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Teacher-forced total log-prob of candidate items [B, M] (no cache; checks the beam scores)."""
        B, M = items.shape
        dev = self.item_tokens.device
        u, h = users.to(dev).repeat_interleave(M), hist.to(dev).repeat_interleave(M, 0)
        labels = self.item_tokens[items.to(dev).reshape(-1)]
        if self.config.arch == "encoder_decoder":
            ids, mask, item = self._prompt(u, h, bos=False)
            logits = self.backbone(inputs_embeds=self._embed(ids, item), attention_mask=mask, labels=labels).logits
        else:
            ids, mask, item = self._prompt(u, h, bos=True)
            L = labels.shape[1]
            ids, item = torch.cat([ids, labels], 1), torch.cat([item, torch.full_like(labels, -1)], 1)
            mask = torch.cat([mask, torch.ones_like(labels)], 1)
            logits = self.backbone(inputs_embeds=self._embed(ids, item), attention_mask=mask,
                                   position_ids=(mask.cumsum(1) - 1).clamp(min=0), logits_to_keep=L + 1).logits[:, :-1]
        lp = torch.log_softmax(logits.float(), -1).gather(2, labels[..., None]).squeeze(-1)
        return lp.sum(1).view(B, M)

    # ------------------------------------------------------------------ decoding

    def _beam_encoder_decoder(self, users, hist, K):
        ids, mask, item = self._prompt(users, hist, bos=False)
        B = ids.shape[0]
        enc = self.backbone.get_encoder()(inputs_embeds=self._embed(ids, item), attention_mask=mask)
        enc_h = enc.last_hidden_state
        kw = self._cache_name

        def step_fn(tokens, st):
            if tokens is None:  # first step on B rows, then copy the cache to the K beams of each user
                dec = torch.full((B, 1), BOS, dtype=torch.long, device=ids.device)
                out = self.backbone(encoder_outputs=(enc_h,), attention_mask=mask, decoder_input_ids=dec,
                                    use_cache=True)
                cache = repeat_cache(output_cache(out), K)
                st = {"cache": cache, "enc": enc_h.repeat_interleave(K, 0), "mask": mask.repeat_interleave(K, 0)}
                return out.logits[:, -1].repeat_interleave(K, 0), st
            out = self.backbone(encoder_outputs=(st["enc"],), attention_mask=st["mask"],
                                decoder_input_ids=tokens[:, None], use_cache=True, **{kw: st["cache"]})
            st["cache"] = output_cache(out)
            return out.logits[:, -1], st

        def reorder(st, idx):  # beams never leave their user: the cross-attention cache needs no reorder
            reorder_cache(st["cache"], idx)
            return st

        return step_fn, reorder, B

    def _beam_decoder_only(self, users, hist, K):
        ids, mask, item = self._prompt(users, hist, bos=True)
        B = ids.shape[0]
        kw = self._cache_name

        def step_fn(tokens, st):
            if tokens is None:
                pos = (mask.cumsum(1) - 1).clamp(min=0)
                out = self.backbone(inputs_embeds=self._embed(ids, item), attention_mask=mask, position_ids=pos,
                                    use_cache=True, logits_to_keep=1)
                cache = repeat_cache(output_cache(out), K)
                st = {"cache": cache, "mask": mask.repeat_interleave(K, 0), "pos": pos[:, -1:].repeat_interleave(K, 0)}
                return out.logits[:, -1].repeat_interleave(K, 0), st
            st["mask"] = torch.cat([st["mask"], torch.ones_like(st["mask"][:, :1])], 1)
            st["pos"] = st["pos"] + 1
            out = self.backbone(input_ids=tokens[:, None], attention_mask=st["mask"], position_ids=st["pos"],
                                use_cache=True, **{kw: st["cache"]})
            st["cache"] = output_cache(out)
            return out.logits[:, -1], st

        def reorder(st, idx):
            reorder_cache(st["cache"], idx)
            return st

        return step_fn, reorder, B

    @torch.no_grad()
    def beam_search(self, users: torch.Tensor, hist: torch.Tensor, num_beams: int | None = None,
                    exclude: list[np.ndarray] | None = None):
        """users [B], history items [B, H] (-1 padded) -> (items [B, K], scores [B, K]); one call.
        exclude: None or one array of banned item indices per user (never returned)."""
        K = int(num_beams or self.config.num_beams)
        dev = self.item_tokens.device
        users, hist = users.to(dev), hist.to(dev)
        make = self._beam_encoder_decoder if self.config.arch == "encoder_decoder" else self._beam_decoder_only
        step_fn, reorder, B = make(users, hist, K)
        return constrained_beam_search(step_fn, None, B, self.trie, K, self.config.n_levels, reorder,
                                       exclude=exclude)

    @torch.no_grad()
    def recommend(self, users: torch.Tensor, histories: list[np.ndarray], k: int,
                  exclude: list[np.ndarray] | None = None) -> torch.LongTensor:
        """Top-k item indices per user [B, k] (-1 = none), best first; k <= config.num_beams.
        exclude: None or one array of item indices per user to ban (see the module docstring)."""
        K = self.config.num_beams
        check_k(k, K, "k (recommendation list length)")
        if exclude is not None and len(exclude) != len(histories):
            raise ValueError(f"exclude has {len(exclude)} entries for {len(histories)} users")
        was_training = self.training
        self.eval()
        users = torch.as_tensor(users).long()
        hist = pack_histories(histories, self.config.max_history)
        chunks = []
        step = max(1, self.config.decode_batch_size)
        for s in range(0, len(users), step):
            ex = None if exclude is None else exclude[s:s + step]
            chunks.append(self.beam_search(users[s:s + step], hist[s:s + step], K, ex)[0].cpu())
        self.train(was_training)
        items = torch.cat(chunks) if chunks else torch.zeros(0, K, dtype=torch.long)
        return items[:, :k]


def register_auto() -> None:
    """Let AutoConfig / AutoModel load saved folders (model_type genrec_sid_rec)."""
    from transformers import AutoConfig, AutoModel

    try:
        AutoConfig.register(SIDRecConfig.model_type, SIDRecConfig)
        AutoModel.register(SIDRecConfig, SIDRecModel)
    except ValueError:
        pass  # already registered


register_auto()
