"""Packed vs one-target LLM training speed: target titles trained per second, tiny Llama, CPU.

Both paths see the same history length H (default 10): a one-target prompt holds the last H titles and
the next one (one target), a packed prompt holds H + 1 consecutive titles of a user and every title
after the first `--min-context` is a target (each conditioned on the titles before it). A step is one
forward + backward + AdamW step on a batch of `--batch` prompts, batch building (collate) included.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/speed_llm_packed.py            # ~10 s
    .venv/bin/python benchmarks/speed_llm_packed.py --steps 20 --hidden 128 --layers 4

Prints one line per path (targets/s, tokens/s) and the packed / one-target ratio.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from genrec.models.llm.config import LLMConfig
from genrec.models.llm.model import LLMRec, load_base, wrap_lora
from genrec.models.llm.prompts import build_codec, packed_examples, training_examples
from genrec.models.llm.tiny import make_tiny_llm, prompt_words

WORDS = ("red green blue dark silent lost last first night day city river house star war love man woman "
         "story game king queen road home heart fire water stone").split()


def titles(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(2, 5))) + f" ({1950 + i % 50}) {i}" for i in range(n)]


def time_path(rec, collate, n: int, batch: int, steps: int, warmup: int) -> tuple[float, float]:
    """(targets/s, tokens/s) over `steps` training steps after `warmup` untimed ones; collate(rows) ->
    (numpy batch, target titles in it)."""
    opt = torch.optim.AdamW([p for p in rec.parameters() if p.requires_grad], lr=1e-4)
    rng = np.random.default_rng(0)
    rec.train()
    targets = tokens = 0
    t0 = time.perf_counter()
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        out, k = collate(rng.choice(n, batch, replace=False))
        b = {key: torch.from_numpy(v) for key, v in out.items() if key != "soft_items"}
        loss = rec(**b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        targets += k if i >= warmup else 0
        tokens += int(b["attention_mask"].sum()) if i >= warmup else 0
    dt = time.perf_counter() - t0
    return targets / dt, tokens / dt


def run_mode(folder, names, train, mode: str, args) -> tuple[float, float, str]:
    cfg = LLMConfig(model=str(folder), history_items=args.history, lora_rank=8, lora_dropout=0.0,
                    train_mode=mode, min_context=args.min_context)
    torch.manual_seed(0)
    tok, base = load_base(cfg, torch.device("cpu"))
    rec = LLMRec(wrap_lora(base, cfg))
    codec = build_codec(tok, names, cfg)
    if mode == "packed":
        win, n_t, _ = packed_examples(train, args.history, args.min_context)
        tgt_s, tok_s = time_path(rec, lambda b: (codec.collate_packed(win[b], n_t[b]), int(n_t[b].sum())),
                                 len(win), args.batch, args.steps, args.warmup)
    else:
        hist, tgt, _ = training_examples(train, args.history)
        tgt_s, tok_s = time_path(rec, lambda b: (codec.collate(hist[b], tgt[b]), len(b)),
                                 len(tgt), args.batch, args.steps, args.warmup)
    return tgt_s, tok_s, codec.layout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--history", type=int, default=10, help="history titles H (both paths)")
    ap.add_argument("--min-context", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--seq-len", type=int, default=40)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = titles(args.items, 0)
    rng = np.random.default_rng(1)
    train = [rng.integers(0, args.items, args.seq_len) for _ in range(args.users)]
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_tiny_llm(tmp, names + prompt_words(), hidden=args.hidden, layers=args.layers,
                               heads=max(2, args.hidden // 16))
        for mode in ("single", "packed"):
            res[mode] = run_mode(folder, names, train, mode, args)
            t, k, layout = res[mode]
            print(f"{mode:6s} ({layout} layout): {t:8.1f} target titles/s  {k:9.0f} tokens/s", flush=True)
    print(f"packed / single: {res['packed'][0] / res['single'][0]:.1f}x target titles/s "
          f"(history {args.history} titles, min_context {args.min_context}, batch {args.batch} prompts, "
          f"tiny Llama hidden {args.hidden} x {args.layers} layers, {args.threads} thread(s), CPU)")


if __name__ == "__main__":
    main()
