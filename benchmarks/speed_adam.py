"""The `adam` section of benchmarks/speed.py: CF training time with PyTorch's fused AdamW kernel
(`train.fused_adam: true`, which the ML-1M dimension study sets) against PyTorch's default AdamW.

At large d AdamW touches every row of both embedding tables each step (their gradients are dense); the
default implementation makes several element-wise passes over each table where the fused kernel makes one.
Each case is one `genrec run` of the ML-1M dimension-study config in a fresh process, without validation
passes (`train.eval_every=0`); the figure is the row's train_time_s. Sizes: MF-BPR d=2048 (2 epochs) and
LightGCN d=512 (1 epoch) on MovieLens-1M; --quick: d=16, 1 epoch on the synthetic dataset.
"""
from __future__ import annotations

import sys

from speed_common import genrec_run_train_time


def adam_section(bench) -> None:
    if bench.quick:
        files = ["configs/runs/cf-dim-ml100k.yaml", "configs/data/synthetic.yaml"]
        cases = [("mf-bpr d16 synthetic 1 epoch", ["run.model=mf_bpr", "cf.dim=16", "train.epochs=1"])]
    else:
        files = ["configs/runs/cf-dim-ml1m.yaml"]
        cases = [("mf-bpr d2048 ml-1m 2 epochs", ["run.model=mf_bpr", "cf.dim=2048", "train.epochs=2"]),
                 ("lightgcn d512 ml-1m 1 epoch", ["run.model=lightgcn", "cf.dim=512", "train.epochs=1"])]
    for name, sets in cases:
        tag = name.split()[0]
        times = {}
        for fused in (True, False):
            run_sets = sets + ["train.eval_every=0", "train.patience=0", f"train.fused_adam={str(fused).lower()}"]
            times[fused] = genrec_run_train_time([sys.executable, "-m", "genrec.cli"], files, run_sets,
                                                 bench.workdir / f"adam-{tag}-{int(fused)}")
        bench.add("adam", f"{name} train_time", times[True], times[False], "s",
                  f"{', '.join(files)}, no validation, one process each; ours = train.fused_adam: true (fused "
                  f"AdamW kernel), reference = PyTorch's default AdamW", precision="fp32")
