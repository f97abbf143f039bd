"""Reference constrained beam search: HuggingFace `generate(num_beams=K, prefix_allowed_tokens_fn=...)`.

What a TIGER / LLM-as-RS reimplementation usually writes: a dict from each decoded prefix to its allowed
next tokens, called once per beam per step by HF's PrefixConstrainedLogitsProcessor. It uses the
full-vocabulary log-softmax masked to the trie, no length penalty and no sampling; every HF setting is
passed in an explicit GenerationConfig (nothing inherited from the model). genrec's own search
(genrec.decode.beam) must return the same top-K lists; the benchmark (benchmarks/speed_decode.py) and
the tests compare the two. The reference knows no banned items: compare without `exclude`.
"""
from __future__ import annotations

import torch

from genrec.decode.trie import PrefixTrie

NO_SCORE = -1e8  # HF fills missing hypotheses with -1e9-scored duplicates; below this a slot is empty


def prefix_table(seqs: list[list[int]]) -> dict[tuple, list[int]]:
    """Every prefix of the item sequences -> sorted list of the tokens that may follow it."""
    kids: dict[tuple, set] = {}
    for s in seqs:
        for d in range(len(s)):
            kids.setdefault(tuple(s[:d]), set()).add(int(s[d]))
    return {k: sorted(v) for k, v in kids.items()}


def prefix_fn(table: dict, start: int, fallback: int):
    """HF callback: the tokens generated after position `start` -> allowed next tokens. A beam that fell
    off the trie (only when fewer real candidates than 2*num_beams exist; its score is -inf) gets
    `fallback` so HF does not raise."""
    fb = [int(fallback)]

    def fn(batch_id: int, sent: torch.Tensor) -> list[int]:
        return table.get(tuple(sent[start:].tolist()), fb)

    return fn


def gen_config(K: int, steps: int, eos: int, pad: int, decoder_start: int | None = None):
    """The explicit GenerationConfig of the reference (K beams, K returned, no sampling or length penalty)."""
    from transformers import GenerationConfig

    kw = dict(num_beams=K, num_return_sequences=K, max_new_tokens=int(steps), do_sample=False,
              length_penalty=0.0, early_stopping=False, eos_token_id=int(eos), pad_token_id=int(pad),
              use_cache=True, return_dict_in_generate=True, output_scores=True)
    if decoder_start is not None:
        kw["decoder_start_token_id"] = int(decoder_start)
    return GenerationConfig(**kw)


def hf_items(trie: PrefixTrie, out, start: int, K: int, eos: int | None = None):
    """generate() output -> (items [B, K], scores [B, K]) in genrec's convention (-1 / -inf = empty)."""
    tok = out.sequences[:, start:].to(trie.device).long()
    if eos is not None:  # cut after the first EOS (HF pads finished hypotheses)
        after = torch.cumsum((tok == eos).long(), 1) - (tok == eos).long() > 0
        tok = torch.where(after, torch.full_like(tok, -1), tok)
    items = trie.lookup(tok).view(-1, K)
    scores = out.sequences_scores.float().to(items.device).view(-1, K)
    empty = (scores < NO_SCORE) | (items < 0)
    return torch.where(empty, torch.full_like(items, -1), items), scores.masked_fill(empty, float("-inf"))


def reference_generate(generate, trie: PrefixTrie, seqs: list[list[int]], start: int, K: int, steps: int,
                       eos: int, pad: int, decoder_start: int | None = None, cut_at_eos: bool = False,
                       **inputs):
    """Run `generate(**inputs, generation_config=..., prefix_allowed_tokens_fn=...)` over the item token
    sequences `seqs` (trie = PrefixTrie of the same) and return (items [B, K], scores [B, K]).
    start: index in the output sequences of the first generated item token."""
    fn = prefix_fn(prefix_table(seqs), start, pad)
    gc = gen_config(K, steps, eos=eos, pad=pad, decoder_start=decoder_start)
    with torch.no_grad():
        out = generate(**inputs, generation_config=gc, prefix_allowed_tokens_fn=fn)
    return hf_items(trie, out, start, K, eos if cut_at_eos else None)
