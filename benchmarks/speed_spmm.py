"""The `spmm` section of benchmarks/speed.py: LightGCN / SGL training time with genrec's propagation backward
(genrec.models.cf.lightgcn._SymmetricSpMM: the normalised adjacency is symmetric, so the gradient of A @ x is
A @ grad) against PyTorch's own backward of the CSR product (which builds A's transpose on every call).

Each case is one `genrec run` of the dimension-study config in a fresh process, once with the module switch
genrec.models.cf.lightgcn.SYMMETRIC_BACKWARD on (ours) and once off (reference); the figure is the row's
train_time_s (training plus its validation passes, the same in both). Sizes: LightGCN d=64 (20 epochs) and
SGL d=64 (10 epochs) on MovieLens-100K, LightGCN d=64 (2 epochs) on MovieLens-1M; --quick: d=16, 1 epoch on
the synthetic dataset.
"""
from __future__ import annotations

import sys
from pathlib import Path

from speed_common import genrec_run_train_time

RUNNER = ("import sys, genrec.models.cf.lightgcn as lg; lg.SYMMETRIC_BACKWARD = sys.argv[1] == '1'; "
          "from genrec.cli import main; sys.exit(main(sys.argv[2:]))")


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
