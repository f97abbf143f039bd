"""Scaling-law fits and the compute frontier over the ML-1M study rows (issue 14).

    python benchmarks/study_fits_ml1m.py [--n-boot 200] [--out benchmarks/results/study_ml1m_fits.json]

Frontier: every ok row of the SID study files and of frontier_ml1m_cf.csv (popularity, MF-BPR, SASRec on
the same 2,000 test users), one row per run id, goes to benchmarks/results/frontier_ml1m.csv (the sweep
column set to "study_ml1m", so a configuration met in two sweeps is one line), then
`genrec plot benchmarks/results/frontier_ml1m.csv --x flops` draws frontier_ml1m_flops.png.

Reads the rows without injection of benchmarks/results/sid_{encoder,inject,quantizer,recsize}_ml1m.csv (one
row per run id) and fits recall@10 against three sizes per row:
  N_RS  the recommender's non-embedding parameters (the row's params_non_embedding);
  N_LLM the frozen text encoder's parameters (ENCODER_PARAMS: counted from the safetensors headers of
        the local model folders, ~/.cache/genrec/models/<id>/model.safetensors);
  N_QT  the quantizer's parameters: RQ-VAE = the MLP encoder and decoder (encoder width -> hidden_dims ->
        latent and back) + levels x codebook x latent codes; residual k-means = levels x codebook x
        encoder width centroids.
Fits (genrec.scaling.fit, which reports a parameter the data cannot pin as "not identified"):
  joint:     R = R0 - A/(N_RS + g1 N_LLM + g2 N_QT)^a - B/N_RS^b   (arXiv 2509.25522) over all rows;
  encoder:   R = R0 - A/N_LLM^a over the encoder sweep (RQ-VAE 3 x 256, recommender "m");
  quantizer: R = R0 - A/N_QT^a over the RQ-VAE rows of the quantizer sweep (MPNet, recommender "m");
  recommender: R = R0 - A/N_RS^a over the recommender-size sweep (MPNet, RQ-VAE 3 x 256; claim 1 on ML-1M).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genrec.scaling.fit import fit_law  # noqa: E402
from genrec.scaling.leaderboard import append_row, read_rows  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FILES = ("sid_encoder_ml1m.csv", "sid_inject_ml1m.csv", "sid_quantizer_ml1m.csv", "sid_recsize_ml1m.csv")
ENCODER_PARAMS = {"minilm-l6": 22_713_728, "mpnet-base": 109_486_978, "smollm2-135m": 134_515_008,
                  "gemma3-270m": 268_098_176}


def quantizer_params(row: dict) -> int:
    """Parameters of the row's quantizer (see the module docstring)."""
    cfg = json.loads(row["config"])["sid"]
    extra = json.loads(row["extra"])
    width = int(extra["encoder_dims"])
    levels, k = int(row["sid_levels"]), int(row["sid_codebook"])
    if row["quantizer"] != "rqvae":
        return levels * k * width
    latent = int(cfg["latent_dim"])
    dims = [width, *cfg["hidden_dims"], latent]
    mlp = sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))  # encoder
    mlp += sum(a * b + b for a, b in zip(dims[::-1][:-1], dims[::-1][1:]))  # decoder
    return mlp + levels * k * latent


def load_rows() -> list[dict]:
    """One row per run id; `_file` is the first file it is in, `_files` every file (sweeps share runs)."""
    rows, seen = [], {}
    for name in FILES:
        path = RESULTS / name
        if not path.exists():
            continue
        for r in read_rows(path):
            if r["status"] != "ok" or r["inject"] != "none":
                continue
            if r["run_id"] in seen:
                seen[r["run_id"]]["_files"].add(name)
                continue
            seen[r["run_id"]] = r
            r["_file"], r["_files"] = name, {name}
            r["_n_rs"] = float(r["params_non_embedding"])
            r["_n_llm"] = float(ENCODER_PARAMS[r["encoder"]])
            r["_n_qt"] = float(quantizer_params(r))
            r["_y"] = float(r["recall@10"])
            rows.append(r)
    return rows


def write_frontier(out: Path) -> tuple[Path, list[dict]]:
    """The combined ML-1M study file (see the module docstring) and its plot; returns (png, frontier steps)."""
    from genrec.scaling.plots import plot_file

    if out.exists():
        out.unlink()
    seen = set()
    for name in ("frontier_ml1m_cf.csv", *FILES):
        for r in read_rows(RESULTS / name) if (RESULTS / name).exists() else []:
            if r["status"] == "ok" and r["run_id"] not in seen:
                seen.add(r["run_id"])
                append_row(out, {**r, "sweep": "study_ml1m"})
    summary: list = []
    png = plot_file(out, x="flops", summary=summary)[0]
    return Path(png), summary[0]["frontier"]


def _fit(rows: list[dict], form: str, axis: str, n_boot: int) -> dict:
    y = np.array([r["_y"] for r in rows])
    try:
        if form == "joint":
            res = fit_law(y, [r["_n_rs"] for r in rows], [r["_n_llm"] for r in rows], [r["_n_qt"] for r in rows],
                          form="joint", n_boot=n_boot)
        else:
            res = fit_law(y, [r[axis] for r in rows], form="power", n_boot=n_boot)
    except Exception as e:  # noqa: BLE001 - too few distinct sizes etc.: reported, not raised
        return {"error": str(e), "n_points": len(rows)}
    out = res.to_dict()
    out["summary"] = res.summary()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--out", default=str(RESULTS / "study_ml1m_fits.json"))
    args = ap.parse_args(argv)
    rows = load_rows()
    if not rows:
        print(f"no rows in {', '.join(FILES)} under {RESULTS}")
        return 1
    enc = [r for r in rows if r["_file"] == "sid_encoder_ml1m.csv"]
    qt = [r for r in rows if r["_file"] == "sid_quantizer_ml1m.csv" and r["quantizer"] == "rqvae"]
    qt += [r for r in rows if r["_file"] == "sid_encoder_ml1m.csv" and r["encoder"] == "mpnet-base"]  # 3 x 256
    rs = [r for r in rows if "sid_recsize_ml1m.csv" in r["_files"]]  # its xs and m are runs of other sweeps
    fits = {"joint": _fit(rows, "joint", "", args.n_boot),
            "encoder": _fit(enc, "power", "_n_llm", args.n_boot),
            "quantizer": _fit(qt, "power", "_n_qt", args.n_boot),
            "recommender": _fit(rs, "power", "_n_rs", args.n_boot)}
    points = [{"file": r["_file"], "point": r["point"], "n_rs": r["_n_rs"], "n_llm": r["_n_llm"], "n_qt": r["_n_qt"],
               "recall@10": r["_y"]} for r in rows]
    Path(args.out).write_text(json.dumps({"metric": "recall@10", "fits": fits, "points": points}, indent=1))
    for name, f in fits.items():
        print(f"{name} ({f.get('n_points')} rows): {f.get('summary') or f.get('error')}")
    print(f"-> {args.out}")
    png, steps = write_frontier(RESULTS / "frontier_ml1m.csv")
    print("compute frontier (best recall@10 at or below each training-FLOPs budget):")
    for st in steps:
        print(f"  {st['flops']:.3g} FLOPs: {st['value']:.4f}  {st['line']}  ({st['point']})")
    print(f"-> {RESULTS / 'frontier_ml1m.csv'}, {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
