"""Sections `train` (SID recommender training: genrec's loop vs a plain HF T5 fp32 loop) and `sasrec`
(SASRec epoch time on ML-1M vs RecBole's published figure).

Ours runs through `genrec.train.train_loop` itself (accelerate; bf16 autocast on CUDA, fp32 on the CPU;
SDPA attention; the loss is accumulated on the device, one host sync per epoch). Its epochs are timed by
wrapping the batch iterator: the clock starts when the loop asks for the first batch and stops when it
asks for one past the last (CUDA events on a GPU), so the loop's own set-up and logging are outside.
The reference is the loop most reimplementations write: T5ForConditionalGeneration with eager
attention in fp32, AdamW, clipping, and `loss.item()` every step, on the same initial weights and batches.
FLOPs: 6 x non-embedding parameters per token (encoder parameters for encoder tokens, decoder
parameters + the LM head for decoder tokens); attention score FLOPs are left out.
"""
from __future__ import annotations

import copy
import itertools
import statistics
import tempfile
import time

import torch
from speed_common import Bench, ml1m_like

# dense bf16 tensor-core peaks (TFLOP/s, no sparsity) by device-name substring, most specific first
PEAK_BF16_TFLOPS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0),
                    ("L4", 121.0), ("A10", 125.0), ("RTX 4090", 165.0), ("RTX 3090", 71.0)]


def peak_tflops(name: str) -> float | None:
    return next((v for k, v in PEAK_BF16_TFLOPS if k in name), None)


class EpochTimer:
    """Wraps each epoch's batch iterator; `times` holds the seconds of each finished epoch."""

    def __init__(self, bench: Bench):
        self.bench = bench
        self._marks: list = []

    def wrap(self, batches):
        start = self._mark()
        yield from batches
        self._marks.append((start, self._mark()))

    def _mark(self):
        if self.bench.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    @property
    def times(self) -> list[float]:
        if self.bench.cuda:
            self.bench.sync()
            return [s.elapsed_time(e) / 1e3 for s, e in self._marks]
        return [e - s for s, e in self._marks]


def train_cfg(epochs: int, batch_size: int, **kw):
    from genrec.config import TrainConfig

    base = dict(epochs=epochs, batch_size=batch_size, lr=1e-3, checkpoint_every=0, progress=False, patience=0,
                grad_clip=1.0, mixed_precision="auto")
    base.update(kw)
    return TrainConfig(**base)


def nonemb_params(module: torch.nn.Module) -> int:
    emb = {id(p) for m in module.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values() if id(p) not in emb)


def t5_flops_per_seq(backbone, t_enc: int, t_dec: int) -> float:
    head = backbone.config.d_model * backbone.config.vocab_size
    return 6.0 * (nonemb_params(backbone.get_encoder()) * t_enc + (nonemb_params(backbone.get_decoder()) + head) * t_dec)


# ----------------------------------------------------------------------------- SID recommender training


def sid_train_case(bench: Bench, label: str, size: dict, bs: int, H: int, steps: int, epochs: int) -> None:
    from transformers import T5ForConditionalGeneration

    from genrec.models.sid.modeling import SIDRecModel
    from genrec.train import train_loop
    from speed_decode import random_codes

    n_items, levels, card = bench.pick((300, 2, 32), (3706, 3, 256), (3706, 3, 256))
    torch.manual_seed(bench.seed)
    model = SIDRecModel.from_codes(random_codes(n_items, levels, card, bench.seed), [card] * levels,
                                   max_history=H, dropout=0.1, **size).to(bench.device)
    ref = T5ForConditionalGeneration._from_config(copy.deepcopy(model.backbone.config), attn_implementation="eager")
    ref.load_state_dict(model.backbone.state_dict())
    ref = ref.to(bench.device).float()
    g = torch.Generator().manual_seed(bench.seed)
    batches = []
    for _ in range(steps):
        users = torch.randint(0, 6040, (bs,), generator=g)
        hist = torch.randint(0, n_items, (bs, H), generator=g)
        batches.append(tuple(t.to(bench.device) for t in (users, hist, torch.randint(0, n_items, (bs,), generator=g))))
    with torch.no_grad():  # the reference gets the same token ids the model builds inside forward()
        ref_batches = []
        for users, hist, tgt in batches:
            ids, mask, _ = model._prompt(users, hist, bos=False)
            ref_batches.append((ids, mask, model.item_tokens[tgt]))
    t_enc, t_dec = ref_batches[0][0].shape[1], levels
    flops = t5_flops_per_seq(model.backbone, t_enc, t_dec)

    timer = EpochTimer(bench)
    cfg = train_cfg(epochs + 1, bs)
    with tempfile.TemporaryDirectory() as tmp:
        res, mem_o = bench.peak_mb(lambda: train_loop(model, lambda m, b: m(*b), lambda ep: timer.wrap(batches), cfg,
                                                      tmp, device=bench.device, steps_per_epoch=steps))
    t_o = statistics.median(timer.times[1:])  # epoch 0 = warm-up
    precision = "bf16 autocast" if bench.cuda and torch.cuda.is_bf16_supported() else "fp32"

    state: dict = {}

    def ref_epoch(todo=None):
        if "opt" not in state:
            state["opt"] = torch.optim.AdamW(ref.parameters(), lr=1e-3, weight_decay=0.0)
        opt = state["opt"]
        ref.train()
        for ids, mask, labels in (ref_batches if todo is None else todo):
            loss = ref(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            state.setdefault("losses", []).append(loss.item())  # the usual per-step logging (a host sync)

    (t_r, _), mem_r = bench.peak_mb(lambda: bench.time(ref_epoch, repeats=epochs, warmup=1))
    seq_o, seq_r = bs * steps / t_o, bs * steps / t_r
    n_ne = nonemb_params(model.backbone)
    n_all = sum(p.numel() for p in model.parameters())
    note = (f"{label}: {n_all / 1e6:.2f}M params ({n_ne / 1e6:.2f}M non-embedding), batch {bs}, {t_enc}+{t_dec} "
            f"tokens/seq, {steps} steps x {epochs} timed epochs; ours genrec train_loop ({precision}, "
            f"{model.backbone.config._attn_implementation}) vs HF T5 fp32 eager + loss.item() per step")
    sec = "train"
    bench.add(sec, f"sid-t5 {label} train", seq_o, seq_r, "seq/s", note)
    bench.add(sec, f"sid-t5 {label} train", seq_o * (t_enc + t_dec), seq_r * (t_enc + t_dec), "tokens/s")
    bench.add(sec, f"sid-t5 {label} train", seq_o * flops / 1e12, seq_r * flops / 1e12, "TFLOP/s",
              f"model FLOPs {flops / 1e6:.1f} MFLOP/seq (6 x non-embedding params per token)")
    peak = peak_tflops(bench.device_name)
    if peak:
        bench.add(sec, f"sid-t5 {label} train", 100 * seq_o * flops / 1e12 / peak,
                  100 * seq_r * flops / 1e12 / peak, "MFU %", f"vs dense bf16 peak {peak:.0f} TFLOP/s for both")
    bench.add(sec, f"sid-t5 {label} train peak memory", mem_o, mem_r, "MB",
              "CUDA peak allocated above weights + batches" if bench.cuda else "not measured on the CPU")
    if bench.profile_dir is not None:
        n = min(steps, 3)
        with tempfile.TemporaryDirectory() as tmp:
            ours = profile_steps(bench, lambda: train_loop(model, lambda m, b: m(*b), lambda ep: iter(batches[:n]),
                                                           train_cfg(1, bs), tmp, device=bench.device))
        refs = profile_steps(bench, lambda: ref_epoch(ref_batches[:n]))
        write_profile(bench, label, n, bs, {"ours (genrec train_loop)": ours, "reference (HF T5 fp32 loop)": refs})
    del model, ref, res


# op categories of a profile (by op name; self time, so nothing is counted twice)
OP_GROUPS = [("matmul", ("mm", "addmm", "bmm", "baddbmm", "gemm", "matmul", "linear", "cublas", "sm90_", "ampere_",
                         "cutlass")),
             ("dropout RNG", ("bernoulli", "dropout", "philox")),
             ("attention", ("attention", "softmax", "flash", "sdpa", "efficient")),
             ("optimizer", ("adam", "_foreach", "clip", "norm_")),
             ("copy / cast", ("copy", "to_copy", "_to", "cast", "contiguous", "clone"))]


def profile_steps(bench: Bench, fn):
    """torch.profiler key averages of fn() (CPU, + CUDA activity on a GPU)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if bench.cuda else [])
    with profile(activities=acts) as prof:
        fn()
        bench.sync()
    return prof.key_averages()


def _group_shares(avgs, attr: str) -> dict[str, float]:
    tot: dict[str, float] = {}
    for ev in avgs:
        t = float(getattr(ev, attr, 0.0) or 0.0)
        name = ev.key.lower()
        g = next((g for g, keys in OP_GROUPS if any(k in name for k in keys)), "other")
        tot[g] = tot.get(g, 0.0) + t
    s = sum(tot.values()) or 1.0
    return {g: v / s for g, v in sorted(tot.items(), key=lambda kv: -kv[1])}


def write_profile(bench: Bench, label: str, n: int, bs: int, profs: dict) -> None:
    attr = "self_device_time_total" if bench.cuda else "self_cpu_time_total"
    path = bench.profile_dir / f"profile_train_{bench.device_slug}.txt"
    lines = [f"== sid-t5 {label}: {n} training steps of batch {bs} on {bench.device_name}, by {attr} =="]
    for name, avgs in profs.items():
        shares = ", ".join(f"{g} {100 * v:.0f}%" for g, v in _group_shares(avgs, attr).items())
        lines += [f"-- {name}: {shares}", avgs.table(sort_by=attr, row_limit=15), ""]
    bench.profiles.append("\n".join(lines))  # every case of this run, in one file
    path.write_text("\n".join(bench.profiles))
    print(f"profile written to {path}", flush=True)


def sid_train_section(bench: Bench) -> None:
    ref13 = dict(num_layers=4, num_decoder_layers=4, d_model=128, num_heads=6, d_kv=64, d_ff=1024)
    tiny = dict(num_layers=2, num_decoder_layers=2, d_model=32, num_heads=2, d_kv=16, d_ff=64)
    big_cpu = dict(num_layers=6, num_decoder_layers=6, d_model=256, num_heads=8, d_kv=32, d_ff=1024)
    big_gpu = dict(num_layers=8, num_decoder_layers=8, d_model=512, num_heads=8, d_kv=64, d_ff=2048)
    epochs = bench.pick(1, 2, 3)
    steps = bench.pick(2, 3, 20)
    H = bench.pick(5, 20, 50)
    sid_train_case(bench, "tiny" if bench.quick else "ref-4+4L-d128", tiny if bench.quick else ref13,
                   bench.pick(8, 64, 256), H, steps, epochs)
    label = "tiny-x2" if bench.quick else ("6+6L-d256" if not bench.cuda else "8+8L-d512")
    big = dict(tiny, d_model=64) if bench.quick else (big_gpu if bench.cuda else big_cpu)
    sid_train_case(bench, label, big, bench.pick(8, 32, 256), H, steps, epochs)
    sid_seq_vs_prefix_case(bench, steps=bench.pick(2, 6, 20), epochs=epochs)


# ----------------------------------------------------------------------------- sequence-parallel vs per-prefix


def sid_seq_vs_prefix_case(bench: Bench, steps: int, epochs: int) -> None:
    """Training targets per second of the decoder-only SID recommender: one causal pass per window of
    H + 1 items (H targets per row) vs one (history of H items -> next item) example per row. Same model
    size, same history length, same rows per batch (so about the same tokens per step); genrec train_loop."""
    from genrec.models.sid.modeling import SIDRecModel
    from genrec.train import train_loop
    from speed_decode import random_codes

    n_items, levels, card = bench.pick((300, 2, 32), (3706, 3, 256), (3706, 3, 256))
    size = bench.pick(dict(num_layers=2, d_model=32, num_heads=2, d_kv=16, d_ff=64),
                      dict(num_layers=4, d_model=128, num_heads=4, d_kv=32, d_ff=512),
                      dict(num_layers=8, d_model=512, num_heads=8, d_kv=64, d_ff=2048))
    bs, H = bench.pick(8, 64, 256), bench.pick(5, 20, 50)
    codes = random_codes(n_items, levels, card, bench.seed)
    g = torch.Generator().manual_seed(bench.seed)
    rows = [torch.randint(0, 6040, (bs,), generator=g) for _ in range(steps)]
    items = [torch.randint(0, n_items, (bs, H + 1), generator=g) for _ in range(steps)]
    modes = {"sequence": [(u, w) for u, w in zip(rows, items)],
             "prefix": [(u, w[:, :-1], w[:, -1]) for u, w in zip(rows, items)]}
    targets = {"sequence": bs * H * steps, "prefix": bs * steps}
    rate = {}
    for mode, batches in modes.items():
        torch.manual_seed(bench.seed)
        model = SIDRecModel.from_codes(codes, [card] * levels, arch="decoder_only", train_mode=mode,
                                       max_history=H, dropout=0.1, **size).to(bench.device)
        batches = [tuple(t.to(bench.device) for t in b) for b in batches]
        timer = EpochTimer(bench)
        with tempfile.TemporaryDirectory() as tmp:
            train_loop(model, lambda m, b: m(*b), lambda ep: timer.wrap(batches), train_cfg(epochs + 1, bs), tmp,
                       device=bench.device, steps_per_epoch=steps)
        rate[mode] = targets[mode] / statistics.median(timer.times[1:])  # epoch 0 = warm-up
        n_ne = nonemb_params(model.backbone)
        del model
    note = (f"decoder-only (Llama) {size['num_layers']}L d{size['d_model']} ({n_ne / 1e6:.2f}M non-embedding) "
            f"for both, history H={H} items x {levels} SID levels, {bs} rows per batch ({H} targets per window "
            f"row vs 1 per prefix row), {steps} steps x {epochs} timed epochs, genrec train_loop")
    if not bench.cuda:
        note += "; CPU shared with other jobs: noisy"
    bench.add("train", "sid-llama train targets, sequence vs prefix", rate["sequence"], rate["prefix"], "items/s",
              f"training target items per second; {note}")


# ----------------------------------------------------------------------------- SASRec epoch (RecBole reference)


RECBOLE_EPOCH_S, RECBOLE_EVAL_S, RECBOLE_MEM_MB = 17.78, 0.12, 1.84 * 1024


def sasrec_section(bench: Bench) -> None:
    from pathlib import Path

    from genrec.config import load_config
    from genrec.eval.evaluate import evaluate
    from genrec.models.cf.family import build_model
    from genrec.train import train_loop

    d = ml1m_like(bench)
    repo = Path(__file__).resolve().parent.parent
    over = ["data.max_history=20", "train.batch_size=32", "cf.num_negatives=16"] if bench.quick else []
    cfg = load_config([str(repo / "configs" / "runs" / "sasrec-ml1m.yaml")], over)
    model = build_model("sasrec", cfg.cf, len(d.split.train), d.n_items, cfg.data.max_history, bench.seed)
    model = model.to(bench.device)
    model.prepare(d.split)
    bs = cfg.train.batch_size
    spe = model.steps_per_epoch(bs)
    cap = bench.pick(2, 12, spe)  # timed steps (CPU: capped, then extrapolated to a whole epoch)
    warm = bench.pick(1, 2, spe)
    timer = EpochTimer(bench)

    def make(ep):
        return timer.wrap(itertools.islice(model.batches(ep, bs), warm if ep == 0 else cap))

    tc = copy.deepcopy(cfg.train)
    tc.epochs, tc.checkpoint_every, tc.progress, tc.patience, tc.max_steps = 2, 0, False, 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        _, mem = bench.peak_mb(lambda: train_loop(model, lambda m, b: m(b), make, tc, tmp, device=bench.device,
                                                  steps_per_epoch=cap))
    t_epoch = timer.times[1] * spe / cap
    how = ("a whole epoch" if cap == spe else
           f"{cap} of {spe} steps timed after {warm} warm-up steps, mean step time x {spe} steps (extrapolated)")
    what = (f"{d.what}: {len(d.split.train)} user sequences (last {cfg.data.max_history}+1 items), batch {bs}, "
            f"{cfg.cf.loss}{'' if cfg.cf.loss == 'softmax' else f' ({cfg.cf.num_negatives} negatives)'}, dim {cfg.cf.dim}, {cfg.cf.layers} blocks, "
            f"mixed_precision={tc.mixed_precision}")
    bench.add("sasrec", "sasrec epoch", t_epoch, RECBOLE_EPOCH_S, "s/epoch",
              f"{what}; {how}. Reference: RecBole's published 17.78 s/epoch on a TITAN RTX (not run here; its "
              "epoch = ~1M augmented prefix sequences with the loss at the last position, ours = one sequence "
              "per user with the loss at every position)")
    model.eval()
    t_eval, _ = bench.time(lambda: evaluate(model, d.split.test, d.n_items, [10, 20], True,
                                            cfg.eval.batch_size), repeats=bench.pick(1, 1, 3), warmup=1)
    bench.add("sasrec", "sasrec full-ranking eval", t_eval, RECBOLE_EVAL_S, "s",
              f"{len(d.split.test)} test users x {d.n_items} items, history excluded; reference RecBole's "
              "published 0.12 s (TITAN RTX)")
    bench.add("sasrec", "sasrec train peak memory", mem, RECBOLE_MEM_MB if bench.cuda else None, "MB",
              "CUDA peak allocated vs RecBole's published 1.84 GB (GPU memory)" if bench.cuda else
              "not measured on the CPU; RecBole's published 1.84 GB is GPU memory")


if __name__ == "__main__":  # only the sequence-vs-prefix case: python benchmarks/speed_train.py [--steps N]
    import argparse
    import sys
    from pathlib import Path

    sys.path.append(str(Path(__file__).resolve().parent.parent))
    ap = argparse.ArgumentParser(description=sid_seq_vs_prefix_case.__doc__)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs (after one warm-up epoch)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    b = Bench(torch.device(args.device), quick=args.quick)
    sid_seq_vs_prefix_case(b, args.steps, args.epochs)
    for r in b.rows:
        print(r.as_list())
