"""The `spmm` and `block` sections of benchmarks/speed.py.

`spmm`: LightGCN / SGL training time with genrec's propagation backward (genrec.models.cf.lightgcn._SymmetricSpMM:
the normalised adjacency is symmetric, so the gradient of A @ x is A @ grad) against PyTorch's own backward of
the CSR product (which builds A's transpose on every call).

Each case is one `genrec run` of the dimension-study config in a fresh process, once with the module switch
genrec.models.cf.lightgcn.SYMMETRIC_BACKWARD on (ours) and once off (reference); the figure is the row's
train_time_s (training plus its validation passes, the same in both). Sizes: LightGCN d=64 (20 epochs) and
SGL d=64 (10 epochs) on MovieLens-100K, LightGCN d=64 (2 epochs) on MovieLens-1M; --quick: d=16, 1 epoch on
the synthetic dataset.

`block`: LightGCN training time with the propagation's sparse products taken 64 columns at a time on the CPU
(genrec.models.cf.lightgcn.SPMM_BLOCK; the slice of the embedding table stays in cache) against one product
over the full width (SPMM_BLOCK = 0), each a fresh `genrec run` without validation passes. Sizes: LightGCN
d=2048 (4 epochs) on MovieLens-100K, d=1024 and d=2048 (30 of an epoch's 121 steps) on MovieLens-1M;
--quick: d=128, 1 epoch on the synthetic dataset, with the table-size threshold lowered to 0 so that the
blocks are exercised.
"""
from __future__ import annotations

import sys
from pathlib import Path

from speed_common import genrec_run_train_time

RUNNER = ("import sys, genrec.models.cf.lightgcn as lg; lg.SYMMETRIC_BACKWARD = sys.argv[1] == '1'; "
          "from genrec.cli import main; sys.exit(main(sys.argv[2:]))")
BLOCK_RUNNER = ("import sys, genrec.models.cf.lightgcn as lg; lg.SPMM_BLOCK = int(sys.argv[1]); "
                "lg.SPMM_BLOCK_MIN_BYTES = int(sys.argv[2]); "
                "from genrec.cli import main; sys.exit(main(sys.argv[3:]))")


def timed_run(sets: list[str], files: list[str], workdir: Path, tag: str, ours: bool) -> float:
    """train_time_s of one `genrec run` (config files + sets) in a fresh process."""
    return genrec_run_train_time([sys.executable, "-c", RUNNER, "1" if ours else "0"], files, sets,
                                 workdir / f"spmm-{tag}-{int(ours)}")


def spmm_section(bench) -> None:
    base = "configs/runs/cf-dim-ml100k.yaml"
    if bench.quick:
        cases = [("lightgcn d16 synthetic 1 epoch", [base, "configs/data/synthetic.yaml"],
                  ["run.model=lightgcn", "cf.dim=16", "train.epochs=1"])]
    else:
        cases = [("lightgcn d64 ml-100k 20 epochs", [base], ["run.model=lightgcn", "cf.dim=64", "train.epochs=20"]),
                 ("sgl d64 ml-100k 10 epochs", [base], ["run.model=sgl", "cf.dim=64", "train.epochs=10"]),
                 ("lightgcn d64 ml-1m 2 epochs", ["configs/runs/cf-dim-ml1m.yaml"],
                  ["run.model=lightgcn", "cf.dim=64", "train.epochs=2"])]
    for name, files, sets in cases:
        tag = name.replace(" ", "_")
        ours = timed_run(sets, files, bench.workdir, tag, True)
        ref = timed_run(sets, files, bench.workdir, tag, False)
        bench.add("spmm", f"{name} train_time", ours, ref, "s",
                  f"{', '.join(files)}, one process each; ours = symmetric backward (A @ grad), reference = "
                  f"PyTorch's CSR backward (SYMMETRIC_BACKWARD off)", precision="fp32")


def block_section(bench) -> None:
    from genrec.models.cf.lightgcn import SPMM_BLOCK, SPMM_BLOCK_MIN_BYTES

    min_bytes = 0 if bench.quick else SPMM_BLOCK_MIN_BYTES
    if bench.quick:
        cases = [("lightgcn d128 synthetic 1 epoch",
                  ["configs/runs/cf-dim-ml100k.yaml", "configs/data/synthetic.yaml"],
                  ["cf.dim=128", "train.epochs=1"])]
    else:
        cases = [("lightgcn d2048 ml-100k 4 epochs", ["configs/runs/cf-dim-ml100k.yaml"],
                  ["cf.dim=2048", "train.epochs=4"]),
                 ("lightgcn d1024 ml-1m 30 steps", ["configs/runs/cf-dim-ml1m.yaml"],
                  ["cf.dim=1024", "train.epochs=1", "train.max_steps=30"]),
                 ("lightgcn d2048 ml-1m 30 steps", ["configs/runs/cf-dim-ml1m.yaml"],
                  ["cf.dim=2048", "train.epochs=1", "train.max_steps=30"])]
    for name, files, sets in cases:
        tag = name.replace(" ", "_")
        run_sets = ["run.model=lightgcn", *sets, "train.eval_every=0", "train.patience=0"]
        times = {block: genrec_run_train_time([sys.executable, "-c", BLOCK_RUNNER, str(block), str(min_bytes)],
                                              files, run_sets, bench.workdir / f"block-{tag}-{block}")
                 for block in (SPMM_BLOCK, 0)}
        bench.add("block", f"{name} train_time", times[SPMM_BLOCK], times[0], "s",
                  f"{', '.join(files)}, no validation, one process each; ours = sparse products in blocks of "
                  f"{SPMM_BLOCK} columns (SPMM_BLOCK), reference = one product over the full width",
                  precision="fp32")
