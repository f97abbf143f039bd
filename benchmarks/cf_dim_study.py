"""The CF embedding-dimension study: a sweep file plus the study's plots and labels.

    python benchmarks/cf_dim_study.py                 # ML-100K: configs/sweeps/cf_dim_ml100k.yaml (180 points)
    python benchmarks/cf_dim_study.py --ml1m          # ML-1M:   configs/sweeps/cf_dim_ml1m.yaml
    python benchmarks/cf_dim_study.py --only 'mf_bpr-plain-*' --max-minutes 30   # any `genrec sweep` option
    python benchmarks/cf_dim_study.py --plot-only     # redraw plots / labels from the CSV

Runs `genrec sweep --sweep <file> --out benchmarks/results/<sweep name>.csv [options]` (resumes: a
point with an ok row is skipped), then genrec.scaling.dimstudy.plot_dim_study on the CSV.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    from genrec.scaling.dimstudy import plot_dim_study
    from genrec.scaling.runner import main as sweep

    argv = list(sys.argv[1:] if argv is None else argv)
    name = "cf_dim_ml1m" if "--ml1m" in argv else "cf_dim_ml100k"
    argv = [a for a in argv if a != "--ml1m"]
    plot_only = "--plot-only" in argv
    argv = [a for a in argv if a != "--plot-only"]
    if "--sweep" not in argv:
        argv += ["--sweep", str(REPO / "configs" / "sweeps" / f"{name}.yaml")]
    if "--out" not in argv:
        argv += ["--out", str(REPO / "benchmarks" / "results" / f"{name}.csv")]
    out = Path(argv[argv.index("--out") + 1])
    rc = 0 if plot_only else sweep(argv + ["--no-plot"], prog="cf_dim_study.py")
    if out.exists():
        plot_dim_study(out)
    return rc


if __name__ == "__main__":
    sys.exit(main())
