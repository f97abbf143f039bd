"""Claim 5 of the study (issue 14), read from the rows of configs/sweeps/llm_study_ml100k.yaml.

    genrec sweep --sweep configs/sweeps/llm_study_ml100k.yaml --out benchmarks/results/llm_study_ml100k.csv
    python benchmarks/llm_study.py [--file benchmarks/results/llm_study_ml100k.csv] [--collect RUNS_DIR ...]

Claim (arXiv 2509.15709): LLM-as-RS improves with the LLM's size, and CF injection helps it less as the LLM
grows. Every point of the sweep is scored on the same seeded sample of 300 ML-100K test users, so every
comparison below is paired user by user (genrec.scaling.paired: per-user metric averaged over a point's
seeds, 95% percentile bootstrap over users). The rules, fixed before any LLM row existed:

  size      d = gemma3-plain-r8 - smollm2-plain-r8 (recall@10): "agrees" if the interval of d lies above 0,
            "disagrees" if below, otherwise "not resolved at this scale";
  CF        c = (smollm2-cf-r8 - smollm2-plain-r8) - (gemma3-cf-r8 - gemma3-plain-r8): "agrees" if the
            interval of c lies above 0 (CF's gain shrinks with size), "disagrees" if below, otherwise
            "not resolved at this scale";
  the same comparisons on ndcg@10 are printed beside them but do not decide the verdict.

Also printed (no verdict): LoRA rank 64 vs 8 and SID tokens vs titles on SmolLM2, and the best LLM point
against each reference (popularity, MF-BPR, SASRec, LightGCN, the SID recommender "l", same users). Writes
<file stem>_compare.json and the compute-frontier plot <file stem>_flops.png next to the file.

--collect copies each ok row's per-user ranks (user_ranks_<run id>.npz from its run folder, or from the
folders given) into benchmarks/results/user_ranks/, so that `genrec compare ... --ranks
benchmarks/results/user_ranks` reproduces every comparison from committed files.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genrec.errors import DataError  # noqa: E402
from genrec.scaling.leaderboard import read_rows  # noqa: E402
from genrec.scaling.paired import paired_difference, rank_file  # noqa: E402
from genrec.scaling.plots import _plt, plot_flops  # noqa: E402

RANKS = ROOT / "benchmarks" / "results" / "user_ranks"
METRICS = ("recall@10", "ndcg@10")
VERDICTS = {  # name: (a, b, c, d) point globs; the verdict reads the interval of (a - b) [- (c - d)]
    "size": ("gemma3-plain-r8-*", "smollm2-plain-r8-*", None, None),
    "cf": ("smollm2-cf-r8-*", "smollm2-plain-r8-*", "gemma3-cf-r8-*", "gemma3-plain-r8-*"),
}
OTHERS = {
    "cf_gain_smollm2": ("smollm2-cf-r8-*", "smollm2-plain-r8-*"),
    "cf_gain_gemma3": ("gemma3-cf-r8-*", "gemma3-plain-r8-*"),
    "rank64_vs_8": ("smollm2-plain-r64-*", "smollm2-plain-r8-*"),
    "sid_tokens_vs_titles": ("smollm2-sid-r8-*", "smollm2-plain-r8-*"),
}
REFS = ("ref-popularity-*", "ref-mf_bpr-*", "ref-sasrec-*", "ref-lightgcn-*", "ref-sid-l-*")


def verdict(ci: list[float]) -> str:
    lo, hi = ci
    return "agrees" if lo > 0 else "disagrees" if hi < 0 else "not resolved at this scale"


def collect(rows: list[dict], dirs: list[str], ranks: Path) -> int:
    ranks.mkdir(parents=True, exist_ok=True)
    n = 0
    for r in rows:
        src = rank_file(r, dirs)
        if src is not None and not (ranks / src.name).exists():
            shutil.copy(src, ranks / src.name)
            n += 1
    return n


def compare(file: Path, ranks: Path, a: str, b: str, c: str | None = None, d: str | None = None) -> dict:
    out = {}
    for m in METRICS:
        try:
            out[m] = paired_difference(file, a, b, m, dirs=[ranks], c=c, d=d)
        except DataError as e:  # a point not run yet, or its ranks not collected
            return {"missing": str(e)}
    return out


def point_means(rows: list[dict]) -> dict[str, dict]:
    """Mean over seeds per point (its name without the -sN suffix)."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["point"].rsplit("-s", 1)[0], []).append(r)
    out = {}
    for p, rs in by.items():
        vals = {m: [float(r[m]) for r in rs] for m in METRICS}
        out[p] = {"seeds": len(rs), **{m: sum(v) / len(v) for m, v in vals.items()},
                  **{f"{m}_spread": max(v) - min(v) for m, v in vals.items()},
                  "train_time_s": sum(float(r["train_time_s"] or 0) for r in rs) / len(rs),
                  "train_flops": rs[0].get("train_flops", "")}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", default=str(ROOT / "benchmarks" / "results" / "llm_study_ml100k.csv"))
    ap.add_argument("--collect", nargs="*", default=None, metavar="DIR",
                    help="copy the rows' per-user ranks into --ranks-dir first (from their run folders or DIRs)")
    ap.add_argument("--ranks-dir", default=str(RANKS), help="the flat folder of user_ranks_<run id>.npz files")
    args = ap.parse_args(argv)
    file, ranks = Path(args.file), Path(args.ranks_dir)
    rows = [r for r in read_rows(file) if r.get("status") == "ok"]  # as genrec compare reads them
    if args.collect is not None:
        print(f"collected {collect(rows, args.collect, ranks)} rank file(s) into {ranks}")
    means = point_means(rows)
    print(f"{'point':<22} seeds  recall@10 (spread)   ndcg@10 (spread)   train s   train FLOPs")
    for p, t in sorted(means.items(), key=lambda kv: -kv[1]["recall@10"]):
        print(f"{p:<22} {t['seeds']:>5}  {t['recall@10']:.4f} ({t['recall@10_spread']:.4f})  "
              f"{t['ndcg@10']:.4f} ({t['ndcg@10_spread']:.4f})  {t['train_time_s']:>8.0f}   {t['train_flops']}")
    result = {"file": str(file.relative_to(ROOT) if file.is_relative_to(ROOT) else file), "points": means,
              "verdicts": {}, "comparisons": {}}
    for name, (a, b, c, d) in VERDICTS.items():
        cmp = compare(file, ranks, a, b, c, d)
        result["verdicts"][name] = cmp if "missing" in cmp else {**cmp, "verdict": verdict(cmp["recall@10"]["ci95"])}
    llm = [p for p in means if not p.startswith("ref-")]
    best = max(llm, key=lambda p: means[p]["recall@10"]) if llm else None
    others = dict(OTHERS)
    if best:
        others.update({f"best_llm_vs_{ref[4:-2]}": (f"{best}-*", ref) for ref in REFS})
    for name, (a, b) in others.items():
        result["comparisons"][name] = compare(file, ranks, a, b)
    for section in ("verdicts", "comparisons"):
        for name, cmp in result[section].items():
            if "missing" in cmp:
                print(f"{name}: not available ({cmp['missing']})")
                continue
            parts = []
            for m in METRICS:
                r = cmp[m]
                parts.append(f"{m} {r['diff']:+.4f} [{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}]")
            print(f"{name}: {'; '.join(parts)}" + (f"  -> {cmp['verdict']}" if "verdict" in cmp else ""))
    out = file.with_name(f"{file.stem}_compare.json")
    out.write_text(json.dumps(result, indent=1))
    print(out)
    if any(r.get("train_flops") not in ("", None) for r in rows):
        print(plot_flops(_plt(), rows, "recall@10", file.with_name(f"{file.stem}_flops.png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
