"""The CF embedding-dimension study's plots and curve labels, from its leaderboard CSV.

`plot_dim_study(csv)` writes next to the CSV (<stem> = its name without .csv): <stem>_ndcg.png
(NDCG@10 vs dim, mean +- std over seeds), <stem>_erank.png (item effective rank vs dim) and
<stem>_labels.json (curve labels from genrec.eval.spectrum.classify_curve with the seeds' standard
errors, means, stds). The rows come from the sweeps configs/sweeps/cf_dim_ml100k.yaml / cf_dim_ml1m.yaml.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

COLORS = {"plain": "C0", "directspec": "C1", "adap_tau": "C2"}


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


def plot_dim_study(csv_path: str | Path, out_dir: str | Path | None = None) -> dict:
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


