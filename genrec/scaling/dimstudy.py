"""The CF embedding-dimension study's plots and curve labels, from its leaderboard CSV.

`plot_dim_study(csv)` writes next to the CSV (<stem> = its name without .csv): <stem>_ndcg.png
(NDCG@10 vs dim, mean +- std over seeds), <stem>_erank.png (item effective rank vs dim) and
<stem>_labels.json (curve labels from genrec.eval.spectrum.classify_curve with the seeds' standard
errors and a Student t threshold for the seed count, means, stds, and the share of converged points).
A curve is labelled only when it has >= MIN_SEEDS (3) seeds at every dim, and every dim its sweep file
plans (`planned`, from planned_dims); otherwise its `label` is null and `label_reason` says why.
`max_dim` labels every curve over its dims <= max_dim alone (the planned dims up to it must be complete),
for a study whose largest dims are not measured yet; those labels go to <stem>_labels_max<max_dim>.json
and say so (`max_dim` in each entry), so they are never mistaken for the full-range labels.
`study_table` gives the same study as a markdown table. Each curve's legend entry gives its share of
converged points (the rows' `converged`, genrec.scaling.tune.converged). Tuning rows (sweep <name>/tune)
are left out. The rows come from the sweeps configs/sweeps/cf_dim_ml100k.yaml / cf_dim_ml100k_cpu.yaml /
cf_dim_ml1m.yaml.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from genrec.scaling.curves import sample_std

COLORS = {"plain": "C0", "directspec": "C1", "adap_tau": "C2"}
STYLE = {"mf_bpr": ("o", "-"), "lightgcn": ("s", "--"), "neumf": ("^", "-."), "sgl": ("D", ":")}  # marker, line
MODEL_COLORS = {"neumf": "C3", "sgl": "C4"}  # their plain curves, apart from MF's and LightGCN's


def curve_style(model: str, variant: str) -> dict:
    marker, ls = STYLE.get(model, ("x", "-"))
    color = MODEL_COLORS.get(model) if variant == "plain" and model in MODEL_COLORS else COLORS.get(variant, "k")
    return {"marker": marker, "ls": ls, "color": color}
MIN_SEEDS = 3


def _within(d, max_dim: int | None) -> bool:
    return max_dim is None or int(d) <= max_dim


def converged_share(rows: list[dict], sweep: str, max_dim: int | None = None) -> dict:
    """{(model, variant): (converged points, points with a converged flag)} from ok rows (dims <= max_dim)."""
    out: dict = defaultdict(lambda: [0, 0])
    for r in rows:
        if r.get("status") != "ok" or r.get("sweep") != sweep or not _within(r.get("cf_dim") or 0, max_dim):
            continue
        flag = json.loads(r.get("extra") or "{}").get("converged")
        if flag is None:
            continue
        c = out[(r["model"], r["cf_variant"])]
        c[0] += bool(flag)
        c[1] += 1
    return {k: tuple(v) for k, v in out.items()}


def curve_label(dims, by_dim: dict, conv: tuple | None, missing=(), max_dim: int | None = None) -> dict:
    """The labels-json entry of one curve: label (or null with the reason), means, stds, sems, seeds.
    missing: dims other curves of the study have and this one lacks (an unfinished curve: no label).
    max_dim: label over the dims <= max_dim alone (the others in dims and missing are dropped)."""
    from genrec.eval.spectrum import classify_curve

    dims = [d for d in dims if _within(d, max_dim)]
    missing = [d for d in missing if _within(d, max_dim)]
    seeds = [len(by_dim[d]) for d in dims]
    mean = np.array([np.mean(by_dim[d]) for d in dims])
    std = np.array([sample_std(by_dim[d]) for d in dims])
    sem = std / np.sqrt(seeds)  # standard error of each mean (0 with one seed)
    entry = {"label": None, "label_reason": "", "label_without_noise_test": classify_curve(dims, mean)}
    if missing:
        entry["label_reason"] = f"unfinished: no rows at dim {', '.join(str(int(d)) for d in missing)}"
    elif min(seeds) < MIN_SEEDS:
        entry["label_reason"] = f"fewer than {MIN_SEEDS} seeds at some dim (min {min(seeds)})"
    else:
        entry["label"] = classify_curve(dims, mean, sem=sem, n_seeds=seeds)
        entry["label_reason"] = f"classify_curve with t threshold ({min(seeds)}+ seeds)"
    if max_dim is not None:
        entry["label_reason"] += f"; labels over dims <= {max_dim} only"
    entry.update(max_dim=max_dim, dims=[int(d) for d in dims], mean=[round(float(x), 5) for x in mean],
                 std=[round(float(x), 5) for x in std], sem=[round(float(x), 5) for x in sem], seeds=seeds,
                 converged=None if conv is None else conv[0], converged_of=None if conv is None else conv[1],
                 converged_share=None if not conv or not conv[1] else round(conv[0] / conv[1], 3))
    return entry


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


def planned_dims(sweep_path: str | Path) -> dict:
    """{(model, variant): [dims]} the sweep file plans for each CF curve, so that a curve whose large dims
    no process has reached yet counts as unfinished even when no other curve has those dims either."""
    from genrec.models.cf.family import variant_name
    from genrec.scaling.sweep import load_sweep

    out: dict = defaultdict(set)
    for p in load_sweep(sweep_path).points:
        if p.cfg.run.family == "cf":
            out[(p.cfg.run.model, variant_name(p.cfg.cf))].add(int(p.cfg.cf.dim))
    return {k: sorted(v) for k, v in out.items()}


def _missing(key, by_dim: dict, study_dims, planned: dict | None) -> list:
    """The dims a curve lacks: those of the study's other curves, and those its sweep file plans."""
    want = set(study_dims) | set((planned or {}).get(key, ()))
    return sorted(d for d in want if d not in by_dim)


def plot_dim_study(csv_path: str | Path, out_dir: str | Path | None = None, planned: dict | None = None,
                   max_dim: int | None = None) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genrec.scaling.leaderboard import read_rows

    rows = read_rows(csv_path)
    stem = Path(csv_path).stem
    out_dir = Path(out_dir or Path(csv_path).parent)
    dataset = next((r["dataset"] for r in rows if r.get("sweep") == stem and r.get("dataset")), "?")
    labels: dict = {}
    conv = converged_share(rows, stem)
    conv_l = conv if max_dim is None else converged_share(rows, stem, max_dim)  # for the labels
    for metric, fname, ylabel in (("ndcg@10", f"{stem}_ndcg.png", "NDCG@10 (test)"),
                                  ("item_erank", f"{stem}_erank.png", "item effective rank")):
        agg = aggregate(rows, metric, stem)
        if not agg:
            continue
        study_dims = sorted({d for v in agg.values() for d in v})
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for (model, variant), by_dim in sorted(agg.items()):
            dims = np.array(sorted(by_dim))
            mean = np.array([np.mean(by_dim[d]) for d in dims])
            std = np.array([sample_std(by_dim[d]) for d in dims])
            share = conv.get((model, variant))
            tag = f" (conv {share[0]}/{share[1]})" if share and metric == "ndcg@10" else ""
            ax.errorbar(dims, mean, yerr=std, ms=3, capsize=2, label=f"{model} / {variant}{tag}",
                        **curve_style(model, variant))
            if metric == "ndcg@10" and sum(_within(d, max_dim) for d in dims) >= 3:
                labels[f"{model}/{variant}"] = curve_label(dims, by_dim, conv_l.get((model, variant)),
                                                           _missing((model, variant), by_dim, study_dims, planned),
                                                           max_dim)
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
    labels_json = out_dir / (f"{stem}_labels.json" if max_dim is None else f"{stem}_labels_max{max_dim}.json")
    labels_json.write_text(json.dumps(labels, indent=1))
    print(labels_json)
    print_labels(labels)
    return labels


def print_labels(labels: dict) -> None:
    """One line per curve: label (or why none), converged share, mean per dim."""
    for k, v in labels.items():
        share = "" if v["converged_share"] is None else f"conv {v['converged']}/{v['converged_of']} "
        points = " ".join(f"{d}:{m:.4f}" for d, m in zip(v["dims"], v["mean"]))
        print(f"{k:28s} {str(v['label']):12s} {share}{points}" + ("" if v["label"] else f"  ({v['label_reason']})"))




def plot_dim_curves(csv_paths: list[str | Path], out_path: str | Path, variant: str = "plain",
                    metric: str = "ndcg@10") -> tuple[Path, list[str]]:
    """One figure with the `variant` curves of several dimension-study CSVs (each read for its own sweep,
    the CSV's stem), e.g. the four plain models of claim 6: MF-BPR and LightGCN from cf_dim_ml100k_cpu.csv,
    NeuMF and SGL from cf_dim_ml100k_neumf_sgl.csv, and the dims in between for MF-BPR and NeuMF from
    cf_dim_ml100k_fine.csv. A model's rows from several files make one curve (the files must share their
    settings apart from the dims: the sweep files say so). Mean +- std over seeds. Each curve gets its
    label (curve_label; a curve lacking a dim that its own files have elsewhere is unfinished), written to
    <out stem>_labels.json and printed. Returns (png, curves drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genrec.scaling.leaderboard import read_rows

    merged: dict = defaultdict(lambda: defaultdict(list))
    conv: dict = defaultdict(lambda: [0, 0])
    files_of: dict = defaultdict(list)  # model -> the files it has rows in
    file_dims: dict = {}
    dataset = "?"
    for path in csv_paths:
        rows = read_rows(path)
        stem = Path(path).stem
        dataset = next((r["dataset"] for r in rows if r.get("sweep") == stem and r.get("dataset")), dataset)
        agg, shares = aggregate(rows, metric, stem), converged_share(rows, stem)
        file_dims[stem] = {d for v in agg.values() for d in v}
        for (model, var), by_dim in agg.items():
            if var != variant:
                continue
            files_of[model].append(stem)
            for d, vals in by_dim.items():
                merged[model][d] += vals
            share = shares.get((model, var))
            if share:
                conv[model][0] += share[0]
                conv[model][1] += share[1]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn, labels = [], {}
    for model, by_dim in sorted(merged.items()):
        dims = np.array(sorted(by_dim))
        seeds = min(len(by_dim[d]) for d in dims)
        style = {**curve_style(model, "plain"), "color": f"C{len(drawn) % 10}"}  # one colour per model here
        ax.errorbar(dims, [np.mean(by_dim[d]) for d in dims], yerr=[sample_std(by_dim[d]) for d in dims], ms=3,
                    capsize=2, label=f"{model} (>= {seeds} seeds)", **style)
        drawn.append(model)
        if len(dims) >= 3:
            missing = sorted({d for f in files_of[model] for d in file_dims[f]} - set(by_dim))
            labels[f"{model}/{variant}"] = curve_label(dims, by_dim, tuple(conv[model]) if conv[model][1] else None,
                                                       missing)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("embedding dimension")
    ax.set_ylabel(f"{metric} (test)")
    ax.set_title(f"{dataset}: {variant} models, tuned per dimension, mean +- std over seeds", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out_path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    out.with_name(f"{out.stem}_labels.json").write_text(json.dumps(labels, indent=1))
    print_labels(labels)
    return out, drawn


def _fmt(x: float) -> str:
    """.0341 style (4 decimals, no leading zero) for values below 1."""
    s = f"{x:.4f}"
    return s[1:] if s.startswith("0.") else s


def study_table(csv_path: str | Path, metric: str = "ndcg@10", sweep: str | None = None,
                planned: dict | None = None, max_dim: int | None = None) -> str:
    """The study as a markdown table, from its CSV alone: one line per curve, one column per dim with the
    mean +- std over seeds, (seeds whose best validation came well before the budget / seeds; the
    chosen train.lr, cf.reg from the rows' config), then the curve's label (curve_label, as in the
    labels json: none for an unfinished curve or one with < 3 seeds) and its hours (a "CPU h" column, or
    hours per device kind once some rows ran on a GPU): the eval seconds of its test and tuning rows
    plus the training seconds of each run folder once (extra.run_dir: a seed-0 row reuses its tuning
    run's folder; a resumed training's train_time_s includes the part before the cut; a resumed row
    without run_dir counts its evaluation only). `sweep` defaults to the CSV's stem, as for
    plot_dim_study; `planned` (planned_dims of the sweep file) adds the dims no curve has reached yet as
    columns of dashes; `max_dim` labels the curves over their dims <= max_dim alone (the column says so)."""
    from genrec.scaling.leaderboard import read_rows

    rows = read_rows(csv_path)
    sweep = sweep or Path(csv_path).stem
    agg, conv = aggregate(rows, metric, sweep), converged_share(rows, sweep, max_dim)
    if not agg:
        return f"{csv_path}: no ok rows of sweep {sweep}"
    study_dims = sorted({d for v in agg.values() for d in v} | {d for v in (planned or {}).values() for d in v})
    cells: dict = defaultdict(lambda: defaultdict(lambda: {"conv": 0, "hp": ""}))
    secs: dict = defaultdict(lambda: defaultdict(float))  # curve -> device kind (CPU, CUDA, ...) -> seconds
    trained: dict = {}  # (curve, run folder) -> (device kind, training seconds), counted once
    for i, r in enumerate(rows):
        if r.get("status") != "ok" or r.get("sweep") not in (sweep, f"{sweep}/tune"):
            continue
        key = (r["model"], r["cf_variant"])
        kind = (r.get("device") or "cpu").split(":")[0].upper()
        extra = json.loads(r.get("extra") or "{}")
        secs[key][kind] += float(r.get("eval_time_s") or 0)
        if extra.get("run_dir") or not extra.get("resumed"):
            folder = (key, extra.get("run_dir") or f"row {i}")
            train_s = float(r.get("train_time_s") or 0)
            if train_s >= trained.get(folder, ("", 0.0))[1]:
                trained[folder] = (kind, train_s)
        if r["sweep"] != sweep:
            continue
        c = cells[key][int(r["cf_dim"])]
        c["conv"] += bool(extra.get("converged"))
        cfg = json.loads(r.get("config") or "{}")
        lr, reg = cfg.get("train", {}).get("lr"), cfg.get("cf", {}).get("reg")
        if lr is not None and reg is not None:
            c["hp"] = f"; {lr:g}, {reg:g}"
    for (key, _), (kind, train_s) in trained.items():
        secs[key][kind] += train_s
    cpu_only = {k for v in secs.values() for k in v} <= {"CPU"}

    def hours(key) -> str:
        if cpu_only:
            return f"{secs[key]['CPU'] / 3600:.2f}"
        return " + ".join(f"{t / 3600:.2f} {kind}" for kind, t in sorted(secs[key].items())) or "0.00"

    unit = "CPU h" if cpu_only else "hours"
    head = "label" if max_dim is None else f"label (d <= {max_dim})"
    lines = ["| curve | " + " | ".join(f"d={d}" for d in study_dims) + f" | {head} | {unit} |",
             "|---|" + "---|" * (len(study_dims) + 2)]
    for key, by_dim in sorted(agg.items()):
        row = []
        for d in study_dims:
            if d not in by_dim:
                row.append("—")
                continue
            v, c = by_dim[d], cells[key][d]
            std = f" +- {_fmt(sample_std(v))}" if len(v) > 1 else ""
            row.append(f"{_fmt(float(np.mean(v)))}{std} ({c['conv']}/{len(v)}{c['hp']})")
        dims = sorted(by_dim)
        label = "—"
        if sum(_within(d, max_dim) for d in dims) >= 3:
            entry = curve_label(dims, by_dim, conv.get(key), _missing(key, by_dim, study_dims, planned), max_dim)
            label = entry["label"] or f"none ({entry['label_reason']})"
        lines.append(f"| {key[0]} {key[1]} | " + " | ".join(row) + f" | {label} | {hours(key)} |")
    for key in sorted(set(planned or {}) - set(agg)):  # planned curves without a finished point yet
        lines.append(f"| {key[0]} {key[1]} | " + " | ".join("—" for _ in study_dims)
                     + f" | none (no rows yet) | {hours(key)} |")
    return "\n".join(lines)
