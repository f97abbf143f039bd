"""The CF embedding-dimension study: a sweep file plus the study's plots and labels.

    python benchmarks/cf_dim_study.py                 # ML-100K: configs/sweeps/cf_dim_ml100k.yaml (180 points)
    python benchmarks/cf_dim_study.py --cpu           # ML-100K reduced: configs/sweeps/cf_dim_ml100k_cpu.yaml
    python benchmarks/cf_dim_study.py --ml1m          # ML-1M:   configs/sweeps/cf_dim_ml1m.yaml
    python benchmarks/cf_dim_study.py --only 'mf_bpr-plain-*' --max-minutes 30   # any `genrec sweep` option
    python benchmarks/cf_dim_study.py --plot-only     # redraw plots / labels from the CSV
    python benchmarks/cf_dim_study.py --table --sweep configs/sweeps/cf_dim_ml1m_gpu.yaml   # the study as a
                                                      # markdown table (mean +- std, converged, chosen lr /
                                                      # L2, label, CPU h per curve), from the CSV alone
    python benchmarks/cf_dim_study.py --sweep configs/sweeps/cf_dim_ml100k_neumf_sgl.yaml   # claim 6's NeuMF + SGL
    python benchmarks/cf_dim_study.py --plot-only --max-dim 1024 --sweep configs/sweeps/cf_dim_ml1m_gpu.yaml
                                                      # labels over d <= 1024 alone (the larger dims not
                                                      # measured yet): <stem>_labels_max1024.json; with
                                                      # --table, the label column over d <= 1024
    python benchmarks/cf_dim_study.py --tuning-report # per tuning-grid key: how much it moved validation ndcg@10
    python benchmarks/cf_dim_study.py --claim6        # the four plain ML-100K curves in one figure, the
                                                      # fine dims of cf_dim_ml100k_fine.csv merged in, with
                                                      # labels: cf_dim_ml100k_plain_models.png / _labels.json

Runs `genrec sweep --sweep <file> --out benchmarks/results/<its name:>.csv [options]` (resumes: a
point with an ok row is skipped), then genrec.scaling.dimstudy.plot_dim_study on the CSV. A curve gets a
label only when it has every dim the sweep file plans for it, with >= 3 seeds each. The sweep files
tune train.lr and cf.reg per point on validation first (their `tune:` key, genrec.scaling.tune;
tuning rows are in the same CSV with sweep = <name>/tune).
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    from genrec.config import read_yaml_mapping
    from genrec.scaling.dimstudy import planned_dims, plot_dim_study, study_table
    from genrec.scaling.runner import main as sweep

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--tuning-report" in argv:  # did each key of the tuning grid move the validation metric?
        from genrec.scaling.leaderboard import read_rows
        from genrec.scaling.tune import grid_effects

        for f in sorted((REPO / "benchmarks" / "results").glob("cf_dim_*.csv")):
            for key, e in grid_effects(read_rows(f), "ndcg@10").items():
                print(f"{f.name}: {key}: {e['sets']} sets of tuning runs differing in it alone, {e['equal']} with "
                      f"equal validation ndcg@10 (4 decimals); spread median {100 * e['median_rel']:.2f}%, "
                      f"max {100 * e['max_rel']:.1f}% of the value")
        return 0
    if "--claim6" in argv:
        from genrec.scaling.dimstudy import plot_dim_curves

        res = REPO / "benchmarks" / "results"
        files = [res / f"{n}.csv" for n in ("cf_dim_ml100k_cpu", "cf_dim_ml100k_neumf_sgl", "cf_dim_ml100k_fine")]
        print(plot_dim_curves([f for f in files if f.exists()], res / "cf_dim_ml100k_plain_models.png")[0])
        return 0
    stem = "cf_dim_ml1m" if "--ml1m" in argv else "cf_dim_ml100k_cpu" if "--cpu" in argv else "cf_dim_ml100k"
    argv = [a for a in argv if a not in ("--ml1m", "--cpu")]
    plot_only, table = "--plot-only" in argv, "--table" in argv
    argv = [a for a in argv if a not in ("--plot-only", "--table")]
    max_dim = None
    if "--max-dim" in argv:
        i = argv.index("--max-dim")
        value = argv[i + 1] if i + 1 < len(argv) else ""
        if not value.isdigit() or int(value) < 1:
            print(f"cf_dim_study.py: --max-dim wants a positive whole number, got {value!r}", file=sys.stderr)
            return 2
        max_dim, argv = int(value), argv[:i] + argv[i + 2:]
        if not (plot_only or table):
            print("cf_dim_study.py: --max-dim goes with --plot-only or --table (it labels, it trains nothing)",
                  file=sys.stderr)
            return 2
    if "--sweep" not in argv:
        argv += ["--sweep", str(REPO / "configs" / "sweeps" / f"{stem}.yaml")]
    if "--out" not in argv:  # the CSV is named after the sweep (its `name:`), as plot_dim_study expects
        doc = read_yaml_mapping(Path(argv[argv.index("--sweep") + 1]), "sweep")
        name = str(doc.get("name") or Path(argv[argv.index("--sweep") + 1]).stem)
        argv += ["--out", str(REPO / "benchmarks" / "results" / f"{name}.csv")]
    out = Path(argv[argv.index("--out") + 1])
    planned = planned_dims(argv[argv.index("--sweep") + 1])
    if table:
        print(study_table(out, planned=planned, max_dim=max_dim) if out.exists() else f"{out}: no such file")
        return 0
    rc = 0 if plot_only else sweep(argv + ["--no-plot"], prog="cf_dim_study.py")
    if out.exists():
        plot_dim_study(out, planned=planned, max_dim=max_dim)
    return rc


if __name__ == "__main__":
    sys.exit(main())
