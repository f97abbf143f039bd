"""One-shot GPU suite: everything worth measuring on a lent GPU, in priority order, within a time budget.

    python benchmarks/gpu_suite.py --budget-s 300                 # on the GPU box (see benchmarks/GPU.md)
    python benchmarks/gpu_suite.py --budget-s 60 --device cpu     # the test: quick sizes, same pieces

Pieces, in order (each one a child process, so a piece that overruns is stopped at the budget):
  1 speed    benchmarks/speed.py sections decode, train (MFU, peak memory), rank, sasrec; one CSV each
  2 recsize  configs/sweeps/gpu_recsize_ml1m.yaml (decoder-only SID recommender, 6 sizes x 3 seeds), seed 0
             of every size first; --procs processes share the GPU and its point list (point locks)
  3 tiger    configs/sweeps/gpu_tiger_ml1m.yaml (the TIGER reference size)
  4 sasrec   configs/sweeps/gpu_sasrec_ml1m.yaml
  5 cfdim    configs/sweeps/cf_dim_ml1m_gpu.yaml (the tuned ML-1M CF dimension study, 216 trainings), its
             LightGCN half, largest dimension first (the MF-BPR half runs on the CPU; --cf-mf adds it), --cf-procs
             processes sharing the GPU; it starts from the committed benchmarks/results/cf_dim_ml1m_gpu.csv, so
             each lent GPU continues where the last one (or the CPU) stopped. It needs genrec's own ML-1M data
             (a carried cache, benchmarks/GPU.md), not the pack's, and is skipped with a note without it
A piece starts only when the time left covers its minimum plus the minimums of the pieces after it;
otherwise it is skipped with a note. Sweeps run through genrec.scaling.runner.main with --max-minutes
from the time left. Data: the pack in benchmarks/gpu_pack/ (made by gpu_prepare.py: ML-1M index
sequences, the SID tokenizer, optional item embeddings) unless --data download. Everything finished is
written at once under --out (default $OUT, else runs/gpu_suite/): notes.md, suite.json, speed_*.csv,
<piece>.csv leaderboards and logs/<piece>*.log. Run folders (checkpoints) go to --work, not --out.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))
PACKAGES = ("torch", "transformers", "peft", "accelerate", "sentence-transformers")
LAZY = ("faiss", "datasets", "gguf")  # only looked up, never imported here
SPEED_SECTIONS = ("decode", "train", "rank", "sasrec")
# minimum seconds a piece needs to produce anything (cpu quick, cuda full)
MIN_S = {"speed": (8, 30), "recsize": (12, 60), "tiger": (12, 60), "sasrec": (10, 40), "cfdim": (10, 60)}
QUICK_SID = ["sid_model.examples_per_epoch=300", "train.epochs=1", "train.batch_size=64", "eval.max_users=40",
             "decode.valid_users=20", "decode.num_beams=10", "decode.batch_size=64", "eval.ks=[5,10]",
             "data.max_history=5", "train.patience=0"]
QUICK_CF = ["train.epochs=2", "train.eval_every=1", "train.patience=0", "eval.max_users=40"]
# The points in the order they are worth having: LightGCN by dimension, largest first (the CPU cannot
# afford d >= 1024, ~2 s a step at d=2048, and works up from d=4 itself; both skip what the other finished).
# The MF-BPR half runs on the CPU; --cf-mf adds it here after LightGCN's.
CF_CURVES = [f"lightgcn-*-dim{d}-*" for d in (2048, 1024, 256, 64, 16, 4)]
CF_CURVES_MF = ["mf_bpr-plain-*", "mf_bpr-adap_tau-*", "mf_bpr-directspec-*"]
QUICK_SASREC = ["train.epochs=1", "data.max_history=20", "eval.max_users=40", "train.eval_every=1",
                "train.patience=0", "eval.ks=[5,10]"]


class Suite:
    def __init__(self, args):
        self.args, self.t0 = args, time.monotonic()
        self.out = Path(args.out or os.environ.get("OUT") or REPO / "runs" / "gpu_suite")
        self.work = Path(args.work or REPO / "runs" / "gpu_suite_work")
        self.quick = args.sizes == "quick" or (args.sizes == "auto" and not args.device.startswith("cuda"))
        self.pieces: list[dict] = []
        self.info: dict = {}
        self.env = {**os.environ, "GENREC_OFFLINE": os.environ.get("GENREC_OFFLINE", "1"), "HF_HUB_OFFLINE": "1",
                    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        # a carried copy of genrec's cache in the repo (benchmarks/GPU.md: the ML-1M data of the CPU's rows)
        carried = REPO / ".cache" / "genrec"
        self.env.setdefault("GENREC_CACHE", str(carried if carried.is_dir() else self.work / "cache"))
        os.environ["GENREC_CACHE"] = self.env["GENREC_CACHE"]  # install_embeddings writes where the runs read
        os.environ["GENREC_OFFLINE"] = self.env["GENREC_OFFLINE"]  # and cf_data_sets loads as the runs will
        (self.out / "logs").mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.args.budget_s - (time.monotonic() - self.t0)

    def min_s(self, name: str) -> float:
        return MIN_S[name][0 if self.quick else 1]

    def record(self, name: str, status: str, note: str, seconds: float = 0.0, files=()) -> None:
        self.pieces.append({"piece": name, "status": status, "seconds": round(seconds, 1), "note": note,
                            "files": [str(Path(f).relative_to(self.out)) for f in files if Path(f).exists()]})
        print(f"[suite] {name}: {status} ({seconds:.0f} s) {note}", flush=True)
        self.write()

    def write(self) -> None:
        state = {"budget_s": self.args.budget_s, "elapsed_s": round(time.monotonic() - self.t0, 1),
                 "device": self.args.device, "sizes": "quick" if self.quick else "full", **self.info,
                 "pieces": self.pieces}
        (self.out / "suite.json").write_text(json.dumps(state, indent=1) + "\n")
        lines = [f"# GPU suite: {state['device']}, budget {self.args.budget_s:.0f} s, {state['elapsed_s']} s used",
                 "", f"sizes: {state['sizes']}; data: {self.info.get('data', '?')}", "",
                 "| piece | status | s | note | files |", "|---|---|---|---|---|"]
        lines += [f"| {p['piece']} | {p['status']} | {p['seconds']} | {p['note']} | {', '.join(p['files'])} |"
                  for p in self.pieces]
        (self.out / "notes.md").write_text("\n".join(lines) + "\n")

    def run(self, name: str, cmd: list[str], timeout: float, log: Path, env: dict | None = None) -> tuple[str, float]:
        """Run a child process with its output in `log`; ('ok' | 'failed (rc N)' | 'stopped at the budget', s)."""
        t = time.monotonic()
        with open(log, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n")
            f.flush()
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env or self.env,
                                    start_new_session=True)
            try:
                rc = proc.wait(timeout=max(1.0, timeout))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
                return "stopped at the budget", time.monotonic() - t
        return ("ok" if rc == 0 else f"failed (rc {rc})"), time.monotonic() - t


def environment(suite: Suite) -> None:
    """Package versions, lazily-needed packages (found or not, not imported), the device."""
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = md.version(p)
        except md.PackageNotFoundError:
            versions[p] = None
    lazy = {p: importlib.util.find_spec(p) is not None for p in LAZY}
    import torch

    dev = suite.args.device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (use --device cpu)")
    name = torch.cuda.get_device_name(torch.device(dev)) if dev.startswith("cuda") else "cpu"
    suite.info.update(packages=versions, optional_packages=lazy, device_name=name)
    missing = [p for p, v in versions.items() if v is None]
    suite.record("environment", "ok" if not missing else "incomplete",
                 f"{name}; missing: {', '.join(missing) or 'none'}; optional found: "
                 f"{', '.join(p for p, ok in lazy.items() if ok) or 'none'}")


def data_overrides(suite: Suite) -> dict:
    """--set values per family for the runner pieces: packed data, the pack's tokenizer, device, folders."""
    common = [f"run.device={suite.args.device}", f"run.output_dir={suite.work / 'runs'}", "train.progress=false"]
    sid = [*common]
    pack = Path(suite.args.pack)
    manifest = json.loads((pack / "manifest.json").read_text()) if (pack / "manifest.json").is_file() else None
    if suite.args.data == "pack" and manifest is None:
        raise SystemExit(f"--data pack: no pack at {pack} (run benchmarks/gpu_prepare.py first)")
    if suite.args.data != "download" and manifest is not None:
        npz = (pack / manifest["data_file"]).resolve()
        if npz.is_relative_to(REPO):  # relative to the repo (the children's cwd): the same run ids on any machine
            npz = npz.relative_to(REPO)
        common += [f"data.source={manifest['dataset']}", f"data.path={npz}"]
        sid = [*common]
        suite.env["GENREC_ML1M_PACK"] = str(npz)
        suite.info["data"] = f"pack {npz.name} (split {manifest['split_fingerprint']})"
    else:
        suite.info["data"] = "genrec's loader (downloads ML-1M when it can)"
    if manifest is not None:
        sid.append(f"sid.tokenizer_path={(REPO / manifest['tokenizer']).resolve()}")
    return {"common": common, "sid": sid, "manifest": manifest}


def speed_piece(suite: Suite, later: float) -> None:
    for sec in SPEED_SECTIONS:
        budget = suite.left() - later
        name = f"speed {sec}"
        if budget < suite.min_s("speed"):
            suite.record(name, "skipped", f"{suite.left():.0f} s left, {later:.0f} s kept for later pieces")
            continue
        csv = suite.out / f"speed_{sec}.csv"
        cmd = [sys.executable, str(HERE / "speed.py"), "--device", suite.args.device, "--only", sec, "--out", str(csv)]
        if suite.quick:
            cmd.append("--quick")
        status, s = suite.run(name, cmd, budget, suite.out / "logs" / f"speed_{sec}.log")
        suite.record(name, status, "benchmarks/speed.py" + (" --quick (tiny sizes)" if suite.quick else ""),
                     s, [csv])


def sweep_piece(suite: Suite, name: str, sweep: str, sets: list[str], later: float, only: list[str],
                procs: int = 1) -> None:
    """One sweep file through genrec.scaling.runner.main: the points of the `only` globs, in that order, with
    `procs` processes on the same point list. A point holds a lock while it runs, and a process that finds
    a point (or a tuning group's runs) held by another takes up the next ones first, so the processes
    spread over the points as they go (a static --shard split would leave some idle while others still
    hold a long point)."""
    csv = suite.out / f"{name}.csv"
    t = time.monotonic()
    budget = suite.left() - later
    if budget < suite.min_s(name):
        suite.record(name, "skipped", f"{sweep}: skipped ({suite.left():.0f} s left)")
        return
    minutes = max(0.05, (budget - suite.min_s(name)) / 60)
    args = ["--sweep", str(REPO / "configs" / "sweeps" / sweep), "--out", str(csv), "--max-minutes",
            f"{minutes:.2f}", "--no-plot", *[x for s in sets for x in ("--set", s)]]
    if any(only):
        args += ["--only", ",".join(g for g in only if g)]
    code = f"import sys; from genrec.scaling.runner import main; sys.exit(main({args!r}))"
    jobs = [(suite.out / "logs" / f"{name}-{i}.log", [sys.executable, "-c", code]) for i in range(procs)]
    results = sorted(set(parallel(suite, jobs, budget)))
    rows = count_rows(csv)
    status = "ok" if rows and results == ["ok"] else "partial" if rows else "nothing finished"
    suite.record(name, status, f"{sweep}: {rows} row(s); {procs} process(es): " + ", ".join(results),
                 time.monotonic() - t, [csv])


def parallel(suite: Suite, jobs: list[tuple[Path, list[str]]], budget: float) -> list[str]:
    """Start every job, wait for all within `budget` seconds; kill what is left. Several jobs share the CPU
    cores (intra-op threads each: cores / jobs, unless OMP_NUM_THREADS is set), so none oversubscribes them."""
    from concurrent.futures import ThreadPoolExecutor

    env = suite.env
    if len(jobs) > 1 and "OMP_NUM_THREADS" not in env:
        env = {**env, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // len(jobs)))}
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(suite.run, "", cmd, budget, log, env) for log, cmd in jobs]
        return [f.result()[0] for f in futures]


def count_rows(csv: Path) -> str:
    if not csv.is_file():
        return ""
    import csv as csvmod

    with open(csv, newline="") as f:
        rows = list(csvmod.DictReader(f))
    ok = sum(r.get("status") == "ok" for r in rows)
    return f"{ok} ok of {len(rows)}" if rows else ""


def install_embeddings(suite: Suite, sets: dict) -> str:
    """Put item embeddings for the (packed) data into genrec's embedding cache, keyed as encode_items looks
    them up when the encoder model is absent: the pack's vectors, else the RQ-VAE reconstruction of the
    tokenizer's codes (the SID runs only read the codes; the vectors feed nothing but sid.inject=encoder)."""
    import numpy as np

    from genrec.config import load_config
    from genrec.data import load_data
    from genrec.encoders import cache
    from genrec.sid.tokenizer import SIDTokenizer

    m = sets["manifest"]
    cfg = load_config([str(REPO / "configs" / "runs" / "sid-ml1m-tiger.yaml")], sets["sid"])
    data = load_data(cfg.data)
    req = cache.request_spec(data, cfg.encoder)
    if cache._find_without_model(req) is not None:
        return "embeddings already cached"
    if m.get("embeddings"):
        emb, what = np.load(Path(suite.args.pack) / m["embeddings"]), m.get("embeddings_info", {})
        model_id, revision = what.get("model_id", cfg.encoder.name), str(what.get("revision", "pack"))
    else:
        tok = SIDTokenizer.from_pretrained(cfg.sid.tokenizer_path)
        emb = tok.reconstruct(tok.codes).astype(np.float32)
        model_id, revision = f"{req['model']} (RQ-VAE reconstruction from the tokenizer codes)", "tokenizer-recon"
    path = cache.cache_dir("embeddings") / f"gpu-pack-{cache._digest(req)[:20]}.npy"
    meta = {"model_id": model_id, "revision": revision, "source": "benchmarks/gpu_pack", "kind": "pack",
            "request": req, "created": time.time(), "dims": int(emb.shape[1]), "dataset": data.name}
    cache._atomic_save(path, np.ascontiguousarray(emb, dtype=np.float32), meta, list(data.item_text))
    return f"embeddings: {model_id}"


def plan(suite: Suite) -> None:
    sets = data_overrides(suite)
    order = ["speed", "recsize", "tiger", "sasrec", "cfdim"]
    skip = set(suite.args.skip.split(",")) - {""}

    def later(name: str) -> float:
        return sum(suite.min_s(n) for n in order[order.index(name) + 1:] if n not in skip)

    if "speed" not in skip:
        speed_piece(suite, later("speed"))
    sid_sets = sets["sid"] + (QUICK_SID if suite.quick else [])
    if {"recsize", "tiger"} - skip and sets["manifest"] is not None:
        t = time.monotonic()
        try:
            suite.record("embeddings", "ok", install_embeddings(suite, sets), time.monotonic() - t)
        except Exception as e:  # noqa: BLE001 - the SID pieces then fail with their own message
            suite.record("embeddings", "failed", f"{type(e).__name__}: {e}"[:300], time.monotonic() - t)
    if "recsize" not in skip:
        seeds = [f"*-s{i}" for i in range(3)]
        sweep_piece(suite, "recsize", "gpu_recsize_ml1m.yaml", sid_sets, later("recsize"), seeds, suite.args.procs)
    if "tiger" not in skip:
        sweep_piece(suite, "tiger", "gpu_tiger_ml1m.yaml", sid_sets, later("tiger"), [""])
    if "sasrec" not in skip:
        sweep_piece(suite, "sasrec", "gpu_sasrec_ml1m.yaml", sets["common"] + (QUICK_SASREC if suite.quick else []),
                    later("sasrec"), [""])
    if "cfdim" not in skip:
        done = REPO / "benchmarks" / "results" / "cf_dim_ml1m_gpu.csv"
        # continue the study across lent GPUs (full sizes only: the quick test's rows are another study)
        if not suite.quick and done.is_file() and not (suite.out / "cfdim.csv").exists():
            import shutil

            shutil.copy(done, suite.out / "cfdim.csv")
        cf_sets, why_not = cf_data_sets(suite, sets["common"], done)
        if cf_sets is None:
            suite.record("cfdim", "skipped", why_not)
        else:
            sweep_piece(suite, "cfdim", "cf_dim_ml1m_gpu.yaml", cf_sets + (QUICK_CF if suite.quick else []),
                        0.0, cf_curves(suite.quick, suite.args.cf_mf), suite.args.cf_procs)


def cf_data_sets(suite: Suite, common: list[str], done: Path) -> tuple[list[str] | None, str]:
    """The cfdim piece's --set values and, when it cannot run, why. At full sizes it continues the committed
    study, whose rows (CPU and GPU alike) come from genrec's own ML-1M loader: the pack's data would give
    other run ids (data.path is part of one), so every point would be trained again under a second id. So
    the piece drops the pack's data settings and needs the loader's ML-1M here, offline: a carried copy of
    genrec's cache (benchmarks/GPU.md), with the data fingerprint of the committed rows."""
    if suite.quick:
        return common, ""  # the quick test's rows are a study of their own, on whatever data the suite has
    sets = [s for s in common if not s.startswith(("data.source=", "data.path="))]
    from genrec.config import load_config
    from genrec.data import load_data
    from genrec.scaling.leaderboard import read_rows

    carry = "carry genrec's ML-1M cache as benchmarks/GPU.md says"
    try:
        data = load_data(load_config([str(REPO / "configs" / "runs" / "cf-dim-ml1m.yaml")], sets).data)
    except Exception as e:  # noqa: BLE001 - whatever the loader says, the piece cannot run
        return None, f"genrec's ML-1M loader has no data here ({type(e).__name__}: {str(e)[:160]}); {carry}"
    prints = {r["data_fingerprint"] for r in read_rows(done) if r.get("data_fingerprint")}
    if prints and data.fingerprint() not in prints:
        return None, (f"the ML-1M data here (fingerprint {data.fingerprint()}) is not that of the committed "
                      f"rows ({', '.join(sorted(prints))}); {carry}")
    suite.info["cfdim_data"] = f"genrec's loader, ML-1M fingerprint {data.fingerprint()}"
    return sets, ""


def cf_curves(quick: bool, with_mf: bool) -> list[str]:
    """The cfdim piece's point globs: one tiny MF curve point for the quick test, else LightGCN's curves
    (and MF-BPR's after them with --cf-mf)."""
    return ["mf_bpr-plain-dim4-*"] if quick else CF_CURVES + (CF_CURVES_MF if with_mf else [])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="One-shot GPU suite within a time budget (see benchmarks/GPU.md).")
    ap.add_argument("--budget-s", type=float, default=300.0, help="wall-clock budget for everything (seconds)")
    ap.add_argument("--device", default="", help="cuda (default when present) | cpu | cuda:i")
    ap.add_argument("--out", default="", help="output folder (default $OUT, else runs/gpu_suite/)")
    ap.add_argument("--work", default="", help="run folders and checkpoints (default runs/gpu_suite_work/)")
    ap.add_argument("--pack", default=str(HERE / "gpu_pack"), help="folder made by benchmarks/gpu_prepare.py")
    ap.add_argument("--data", choices=["auto", "pack", "download"], default="auto",
                    help="auto: the pack when there is one (a GPU box has no network), else genrec's loader")
    ap.add_argument("--sizes", choices=["auto", "quick", "full"], default="auto",
                    help="auto: full on CUDA, quick (tiny, timings meaningless) on the CPU")
    ap.add_argument("--procs", type=int, default=0, help="recsize processes sharing the device (default 2 on "
                                                         "CUDA, 1 on the CPU)")
    ap.add_argument("--cf-procs", type=int, default=0, help="cfdim processes sharing the device (default 6 on "
                                                            "CUDA, 1 on the CPU)")
    ap.add_argument("--cf-mf", action="store_true", help="cfdim: the MF-BPR curves too, after LightGCN's (with "
                    "the pack their run ids differ from the CPU rows': use it with --data download and genrec's "
                    "ML-1M cache carried, benchmarks/GPU.md)")
    ap.add_argument("--skip", default="", help="comma-separated pieces to leave out: speed,recsize,tiger,sasrec,cfdim")
    args = ap.parse_args(argv)
    if not args.device:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.procs = args.procs or (2 if args.device.startswith("cuda") else 1)
    args.cf_procs = args.cf_procs or (6 if args.device.startswith("cuda") else 1)
    suite = Suite(args)
    environment(suite)
    plan(suite)
    suite.record("done", "ok", f"{suite.left():.0f} s of the budget left")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
