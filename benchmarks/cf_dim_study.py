"""Embedding-dimension study of the CF baselines on MovieLens-100K.

    python benchmarks/cf_dim_study.py                       # mf_bpr + lightgcn, dims 4..2048, 3 seeds, 3 variants
    python benchmarks/cf_dim_study.py --dims 4,16,64 --seeds 0 --max-minutes 5
    python benchmarks/cf_dim_study.py --plot-only           # redraw plots / labels from the CSV
    python benchmarks/cf_dim_study.py --config configs/runs/cf-dim-ml1m.yaml --out benchmarks/results/cf_dim_ml1m.csv

Every point goes through genrec.pipeline.run_point (base config configs/runs/cf-dim-ml100k.yaml) and
one row is appended to benchmarks/results/cf_dim_ml100k.csv (genrec.scaling.leaderboard; --out names
another CSV, whose stem is also the rows' sweep name); a point whose run id already has an ok row is
skipped, so the study resumes. Points run seed-major (every point of
seed 0, then seed 1, ...), so a time-capped run still covers the whole grid with fewer seeds.
Next to the CSV (<stem> = its name without .csv): <stem>_ndcg.png (NDCG@10 vs dim, mean +- std over
seeds), <stem>_erank.png (item effective rank vs dim) and <stem>_labels.json (curve labels from
genrec.eval.spectrum.classify_curve with the seeds' standard errors, means, stds).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import traceback
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BASE = REPO / "configs" / "runs" / "cf-dim-ml100k.yaml"
OUT = REPO / "benchmarks" / "results" / "cf_dim_ml100k.csv"
VARIANTS = {"plain": [], "directspec": ["cf.directspec=true"], "adap_tau": ["cf.adap_tau=true"]}
COLORS = {"plain": "C0", "directspec": "C1", "adap_tau": "C2"}
log = logging.getLogger("genrec")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mf_bpr,lightgcn")
    ap.add_argument("--dims", default="4,8,16,32,64,128,256,512,1024,2048")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--config", default=str(BASE))
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--max-minutes", type=float, default=0.0, help="start no new point after this (0 = no cap)")
    ap.add_argument("--plot-only", action="store_true")
    return ap.parse_args(argv)


def _csv_list(s: str, cast=str):
    return [cast(x) for x in s.split(",") if x.strip()]


def run_study(args) -> int:
    from genrec.config import load_config
    from genrec.pipeline import prepare, run_id, run_point
    from genrec.scaling.leaderboard import append_row, done_run_ids, make_row

    models, dims, seeds = _csv_list(args.models), _csv_list(args.dims, int), _csv_list(args.seeds, int)
    variants = _csv_list(args.variants)
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise SystemExit(f"unknown variant(s) {bad} (known: {', '.join(VARIANTS)})")
    sweep = Path(args.out).stem
    base = load_config([args.config], args.overrides)
    data, split = prepare(base)
    done = done_run_ids(args.out)
    t0 = time.perf_counter()
    plan = [(s, m, v, d) for s in seeds for m in models for v in variants for d in dims]
    ran = skipped = failed = 0
    for i, (seed, model, variant, dim) in enumerate(plan):
        over = [*args.overrides, f"run.model={model}", f"cf.dim={dim}", f"run.seed={seed}", *VARIANTS[variant]]
        cfg = load_config([args.config], over)
        point = f"{model}/{variant}/d{dim}"
        if run_id(cfg) in done:
            skipped += 1
            continue
        if args.max_minutes and time.perf_counter() - t0 > 60 * args.max_minutes:
            log.warning("time cap of %.1f min reached; %d points left", args.max_minutes, len(plan) - i)
            break
        t1 = time.perf_counter()
        try:
            res = run_point(cfg, data, split)
        except Exception as e:  # noqa: BLE001 - one failed point must not end the study
            failed += 1
            log.error("%s seed %d failed: %s\n%s", point, seed, e, traceback.format_exc(limit=3))
            append_row(args.out, make_row(cfg, {"extra": {"error": str(e)}}, sweep, point, status="failed"))
            continue
        append_row(args.out, make_row(cfg, res, sweep, point))
        ran += 1
        m = res["metrics"]
        print(f"[{i + 1}/{len(plan)}] {point} seed {seed}: ndcg@10={m['ndcg@10']:.4f} recall@10={m['recall@10']:.4f} "
              f"item_erank={res['extra'].get('item_erank', float('nan')):.1f} epochs={res['extra'].get('epochs_run')} "
              f"({time.perf_counter() - t1:.1f}s)", flush=True)
    print(f"ran {ran}, skipped {skipped} (already in {args.out}), failed {failed}; "
          f"{(time.perf_counter() - t0) / 60:.1f} min", flush=True)
    return failed


def aggregate(rows: list[dict], metric: str, sweep: str) -> dict:
    """{(model, variant): {dim: [values over seeds]}} from ok rows (metric may live in `extra`)."""
    out: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("status") != "ok" or r.get("sweep") != sweep:
            continue
        val = r.get(metric)
        if val in (None, ""):
            val = json.loads(r.get("extra") or "{}").get(metric)
        if val in (None, ""):
            continue
        out[(r["model"], r["cf_variant"])][int(r["cf_dim"])].append(float(val))
    return out


def plot_and_label(csv_path: str | Path, out_dir: str | Path | None = None) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genrec.eval.spectrum import classify_curve
    from genrec.scaling.leaderboard import read_rows

    rows = read_rows(csv_path)
    stem = Path(csv_path).stem
    out_dir = Path(out_dir or Path(csv_path).parent)
    dataset = next((r["dataset"] for r in rows if r.get("sweep") == stem and r.get("dataset")), "?")
    labels: dict = {}
    for metric, fname, ylabel in (("ndcg@10", f"{stem}_ndcg.png", "NDCG@10 (test)"),
                                  ("item_erank", f"{stem}_erank.png", "item effective rank")):
        agg = aggregate(rows, metric, stem)
        if not agg:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for (model, variant), by_dim in sorted(agg.items()):
            dims = np.array(sorted(by_dim))
            mean = np.array([np.mean(by_dim[d]) for d in dims])
            std = np.array([np.std(by_dim[d]) for d in dims])
            ax.errorbar(dims, mean, yerr=std, marker="o" if model == "mf_bpr" else "s", ms=3, capsize=2,
                        label=f"{model} / {variant}", ls="-" if model == "mf_bpr" else "--",
                        color=COLORS.get(variant, "k"))
            if metric == "ndcg@10" and len(dims) >= 3:
                sem = np.array([np.std(by_dim[d], ddof=1) / np.sqrt(len(by_dim[d])) if len(by_dim[d]) > 1 else 0.0
                                for d in dims])  # standard error of each mean (0 with one seed)
                labels[f"{model}/{variant}"] = {
                    "label": classify_curve(dims, mean, sem=sem),
                    "label_without_noise_test": classify_curve(dims, mean), "dims": dims.tolist(),
                    "mean": [round(float(x), 5) for x in mean], "std": [round(float(x), 5) for x in std],
                    "sem": [round(float(x), 5) for x in sem],
                    "seeds": [len(by_dim[d]) for d in dims]}
        if metric == "item_erank":
            lim = np.array(sorted({d for v in agg.values() for d in v}))
            ax.plot(lim, lim, color="grey", lw=0.8, ls=":", label="erank = dim")
            ax.set_yscale("log")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("embedding dimension")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{dataset}, leave-one-out, full ranking: {ylabel}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=120)
        plt.close(fig)
        print(out_dir / fname)
    (out_dir / f"{stem}_labels.json").write_text(json.dumps(labels, indent=1))
    for k, v in labels.items():
        print(f"{k:28s} {v['label']:12s} " + " ".join(f"{d}:{m:.4f}" for d, m in zip(v["dims"], v["mean"])))
    return labels


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    failed = 0 if args.plot_only else run_study(args)
    if Path(args.out).exists():
        plot_and_label(args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
