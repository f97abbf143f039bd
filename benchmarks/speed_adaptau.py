"""The `adaptau` section of benchmarks/speed.py: peak memory of Adap-tau training with the per-epoch
temperature update scoring the training interactions a block at a time (genrec.models.cf.losses.UPDATE_ROWS)
against all of them at once (UPDATE_ROWS set above the interaction count: the update before blocks).

All at once, the update holds three interactions x d float tables (ML-1M, ~0.9M interactions after the
degree filter: ~11 GB at d=1024, ~22 GB at d=2048); in blocks it holds three UPDATE_ROWS x d ones. Each case
is one `genrec run` of the ML-1M dimension-study config in a fresh process, 2 epochs (the update runs at the
start of epoch 1) without validation passes; the figure is the row's peak_mem_mb (the process's peak
resident set on the CPU). Sizes: MF-BPR d=256 on MovieLens-1M (the reference fits beside other work on a
24 GB machine); --quick: d=16 on the synthetic dataset. The temperatures are the same either way
(tests/test_cf.py::test_adap_tau_update_is_blockwise_and_exact).
"""
from __future__ import annotations

import sys

from speed_common import genrec_run_row

RUNNER = ("import sys, genrec.models.cf.losses as lo; lo.UPDATE_ROWS = int(sys.argv[1]); "
          "from genrec.cli import main; sys.exit(main(sys.argv[2:]))")


def adaptau_section(bench) -> None:
    from genrec.models.cf.losses import UPDATE_ROWS

    if bench.quick:
        files, name = ["configs/runs/cf-dim-ml100k.yaml", "configs/data/synthetic.yaml"], "mf-bpr d16 synthetic"
        sets = ["cf.dim=16"]
    else:
        files, name = ["configs/runs/cf-dim-ml1m.yaml"], "mf-bpr d256 ml-1m"
        sets = ["cf.dim=256"]
    sets = ["run.model=mf_bpr", "cf.adap_tau=true", *sets, "train.epochs=2", "train.eval_every=0",
            "train.patience=0"]
    peak = {rows: float(genrec_run_row([sys.executable, "-c", RUNNER, str(rows)], files, sets,
                                       bench.workdir / f"adaptau-{rows}")["peak_mem_mb"])
            for rows in (UPDATE_ROWS, 10**12)}
    bench.add("adaptau", f"{name} 2 epochs peak_mem", peak[UPDATE_ROWS], peak[10**12], "MB",
              f"{', '.join(files)}, no validation, one process each; ours = Adap-tau update in blocks of "
              f"{UPDATE_ROWS} interactions (UPDATE_ROWS), reference = all interactions at once", precision="fp32")
