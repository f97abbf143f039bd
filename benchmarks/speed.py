"""Throughput / latency of genrec's fast paths against the straightforward reference, in one process.

    python benchmarks/speed.py                       # every section; CUDA when present, else small CPU sizes
    python benchmarks/speed.py --quick               # tiny sizes (the test; timings mean nothing)
    python benchmarks/speed.py --only decode,train   # some sections
    python benchmarks/speed.py --llm smollm2-135m    # decode a real local causal LM instead of a tiny random one

Sections (ours vs reference, same inputs and weights):
  decode   trie beam search vs HF generate(num_beams, prefix_allowed_tokens_fn): SID T5 and causal LM + LoRA;
           users/s at beam 10 and 50, and whether the top-K lists are identical
  train    SID recommender training: genrec train_loop vs a plain HF T5 fp32 loop (seq/s, tokens/s,
           TFLOP/s, MFU on known GPUs, peak memory) at the 4+4-layer d128 reference size and a larger one
  rank     full-ranking evaluation of all ML-1M users x items vs a per-user loop; top-10 retrieval over
           1M synthetic items: batched matmul vs per-user loop, faiss IndexFlatIP vs batched matmul
  quant    RQ-VAE and residual k-means training time per 10k random 768-d items
  encoder  TextEncoder vs SentenceTransformer.encode (minilm-l6 when cached locally, else a tiny random BERT)
  sasrec   SASRec epoch time on ML-1M vs RecBole's published 17.78 s/epoch (TITAN RTX)
  malloc   CF training time (MF-BPR d=1024, LightGCN d=2048 on ML-100K) with genrec's allocator setting vs
           glibc's defaults, each in a fresh `genrec run` process (genrec.runtime.tune_cpu_malloc)
  spmm     LightGCN / SGL training time with the symmetric propagation backward vs PyTorch's CSR backward,
           each in a fresh `genrec run` process (genrec.models.cf.lightgcn.SYMMETRIC_BACKWARD)
  block    LightGCN training time (d=2048 ML-100K, d=1024 / 2048 ML-1M) with the sparse products in column
           blocks vs one product over the full width, each in a fresh `genrec run` process (SPMM_BLOCK)
  adam     CF training time (MF-BPR d=2048, LightGCN d=512 on ML-1M) with the fused AdamW kernel
           (train.fused_adam) vs PyTorch's default AdamW, each in a fresh `genrec run` process
  adaptau  peak memory of MF-BPR + Adap-tau on ML-1M with the per-epoch temperature update in blocks of
           interactions vs all at once, each in a fresh `genrec run` process (UPDATE_ROWS)

Timing: warm-up, then the median of repeats (CUDA events on a GPU, perf_counter on the CPU). The table
(section, case, ours, reference, unit, ratio, precision, device, note) is printed and written as CSV to --out
(default benchmarks/results/speed_<device>.csv). ratio = how many times better ours is (>1: ours faster
or smaller), whatever the unit's direction. precision = what ours computed in: the mixed precision its
genrec train_loop actually ran with (recorded per section), else fp32.
"""
from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
if str(HERE.parent) not in sys.path:
    sys.path.append(str(HERE.parent))  # genrec from the checkout when it is not installed (last: shadows nothing)
os.environ.setdefault("GENREC_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
from speed_common import COLUMNS, Bench, Row  # noqa: E402

log = logging.getLogger("genrec.speed")
SECTIONS = ["decode", "train", "rank", "quant", "encoder", "sasrec", "malloc", "spmm", "block", "adam", "adaptau"]


def section_fns() -> dict:
    import speed_adam
    import speed_adaptau
    import speed_decode
    import speed_malloc
    import speed_rank
    import speed_spmm
    import speed_train

    return {"decode": speed_decode.run, "train": speed_train.sid_train_section, "rank": speed_rank.rank_section,
            "quant": speed_rank.quant_section, "encoder": speed_rank.encoder_section,
            "sasrec": speed_train.sasrec_section, "malloc": speed_malloc.malloc_section,
            "spmm": speed_spmm.spmm_section, "block": speed_spmm.block_section, "adam": speed_adam.adam_section,
            "adaptau": speed_adaptau.adaptau_section}


class PrecisionLog:
    """Records the mixed precision each genrec train_loop of a section actually ran with (the accelerator's,
    after genrec.runtime.resolve_precision), by wrapping genrec.train.make_accelerator while the section runs."""

    def __enter__(self):
        import genrec.train as train

        self.module, self.original, self.seen = train, train.make_accelerator, []

        def wrapped(*args, **kwargs):
            acc = self.original(*args, **kwargs)
            mp = str(acc.mixed_precision)
            if mp not in self.seen:
                self.seen.append(mp)
            return acc

        train.make_accelerator = wrapped
        return self

    def __exit__(self, *exc):
        self.module.make_accelerator = self.original

    def label(self, section: str) -> str:
        """The precision column of a section's rows: what ours trained in ('no' = fp32), else fp32 (no autocast
        outside train_loop); the train section's reference is the plain fp32 HF loop."""
        if not self.seen:
            return "fp32"
        ours = "/".join("fp32" if p == "no" else p for p in self.seen)
        return f"ours {ours}, reference fp32" if section == "train" else f"training {ours}, scoring fp32"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="genrec fast paths vs straightforward references (one process).")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (tests); timings are meaningless")
    ap.add_argument("--only", default="", help=f"comma-separated sections of {','.join(SECTIONS)}")
    ap.add_argument("--out", default="", help="CSV path (default benchmarks/results/speed_<device>.csv)")
    ap.add_argument("--device", default="auto", help="auto (cuda when present) | cpu | cuda[:i]")
    ap.add_argument("--repeats", type=int, default=0, help="timed repeats (default 3 on CPU, 5 on CUDA, 1 quick)")
    ap.add_argument("--llm", default="tiny", help="decode's causal LM: tiny (random, built in code) or a local "
                                                  "folder / resolver short name available offline")
    ap.add_argument("--profile", action="store_true",
                    help="train section: also profile a few steps of ours and of the reference (torch.profiler) "
                         "and write the op tables to profile_train_<device>.txt next to the CSV")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def format_table(rows: list[Row]) -> str:
    cells = [COLUMNS] + [["" if v is None else str(v) for v in r.as_list()] for r in rows]
    width = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS) - 2)]  # device and note unpadded
    lines = []
    for c in cells:
        head = " | ".join(c[i].ljust(width[i]) for i in range(len(width)))
        lines.append(f"{head} | {c[-2]} | {c[-1]}")
    lines.insert(1, "-" * min(160, len(lines[0])))
    return "\n".join(lines)


def write_csv(rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow(["" if v is None else v for v in r.as_list()])


def main(argv: list[str] | None = None) -> list[Row]:
    args = build_parser().parse_args(argv)
    from genrec.runtime import tune_cpu_malloc

    tune_cpu_malloc()  # as every genrec run does (pipeline.run_point)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    only = [s.strip() for s in args.only.split(",") if s.strip()] or SECTIONS
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        raise SystemExit(f"--only: unknown section(s) {bad}; known: {SECTIONS}")
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    repeats = args.repeats or (1 if args.quick else (5 if device.type == "cuda" else 3))
    out_dir = (Path(args.out).parent if args.out else HERE / "results")
    with tempfile.TemporaryDirectory(prefix="genrec-speed-") as tmp:
        bench = Bench(device, quick=args.quick, repeats=repeats, warmup=1, seed=args.seed, llm=args.llm,
                      workdir=Path(tmp), profile_dir=out_dir if args.profile else None)
        mode = "quick (tiny sizes, timings meaningless)" if args.quick else (
            "full GPU sizes" if bench.cuda else "no GPU: small CPU sizes (see each note), not GPU figures")
        print(f"genrec speed benchmark on {bench.device_name}; {mode}; torch {torch.__version__}, "
              f"transformers {transformers.__version__}; sections {','.join(only)}", flush=True)
        fns = section_fns()
        for name in only:
            t0 = time.perf_counter()
            torch.manual_seed(args.seed)
            n_before = len(bench.rows)
            with PrecisionLog() as plog:
                try:
                    fns[name](bench)
                except Exception as e:  # noqa: BLE001 - one failing section must not hide the others
                    traceback.print_exc()
                    bench.add(name, f"{name} FAILED", None, None, "", f"FAILED: {type(e).__name__}: {e}"[:300])
            for r in bench.rows[n_before:]:
                r.precision = r.precision or plog.label(name)
            print(f"[{name}] {len(bench.rows) - n_before} rows in {time.perf_counter() - t0:.1f} s", flush=True)
    out = Path(args.out) if args.out else HERE / "results" / f"speed_{bench.device_slug}.csv"
    print(format_table(bench.rows))
    write_csv(bench.rows, out)
    print(f"wrote {out}")
    return bench.rows


if __name__ == "__main__":
    main()
