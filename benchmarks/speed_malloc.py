"""The `malloc` section of benchmarks/speed.py: CF training time with genrec's allocator setting
(genrec.runtime.tune_cpu_malloc: glibc's mmap / trim thresholds raised) against glibc's defaults.

Each case is one `genrec run` in a fresh process (the allocator is set per process), once with
GENREC_TUNE_MALLOC unset and once with GENREC_TUNE_MALLOC=0; the figure is the row's train_time_s
(training plus its validation passes). Sizes: MF-BPR d=1024 (6 epochs) and LightGCN d=2048 (4 epochs) on
MovieLens-100K with the dimension-study config; --quick: d=16, 1 epoch on the synthetic dataset.
"""
from __future__ import annotations

import sys
from pathlib import Path

from speed_common import genrec_run_train_time


def timed_run(sets: list[str], workdir: Path, tag: str, tuned: bool, quick: bool) -> float:
    """train_time_s of one `genrec run` of the dimension-study config with `sets`, in a fresh process."""
    files = ["configs/runs/cf-dim-ml100k.yaml"] + (["configs/data/synthetic.yaml"] if quick else [])
    return genrec_run_train_time([sys.executable, "-m", "genrec.cli"], files, sets,
                                 workdir / f"malloc-{tag}-{int(tuned)}", {"GENREC_TUNE_MALLOC": "1" if tuned else "0"})


def malloc_section(bench) -> None:
    cases = ([("mf-bpr d16", ["run.model=mf_bpr", "cf.dim=16", "train.epochs=1"])] if bench.quick else
             [("mf-bpr d1024 6 epochs", ["run.model=mf_bpr", "cf.dim=1024", "train.epochs=6"]),
              ("lightgcn d2048 4 epochs", ["run.model=lightgcn", "cf.dim=2048", "train.epochs=4"])])
    data = "synthetic" if bench.quick else "ml-100k"
    for name, sets in cases:
        tag = name.split()[0]
        ours = timed_run(sets, bench.workdir, tag, True, bench.quick)
        ref = timed_run(sets, bench.workdir, tag, False, bench.quick)
        bench.add("malloc", f"{name} train_time", ours, ref, "s",
                  f"{data}, configs/runs/cf-dim-ml100k.yaml, one process each; ours = genrec's allocator "
                  f"setting (tune_cpu_malloc), reference = GENREC_TUNE_MALLOC=0 (glibc defaults)", precision="fp32")
