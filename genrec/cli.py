"""The `genrec` command line. Every sub-command takes `-c FILE` (repeatable) and `--set a.b=value`.

User errors (bad files, columns, config keys) print one line and exit 2; never a deep stack trace.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from genrec.errors import GenrecError

log = logging.getLogger("genrec")
# the datasets' shipped settings: `genrec data NAME` reads configs/data/NAME.yaml, as the runs on NAME do
DATA_CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "data"


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", action="append", default=[], help="YAML config (repeatable, merged in order)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=1e-3 (repeatable)")


def _row_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--leaderboard", default="", help="CSV to append the row to (default: the config's "
                   "run.leaderboard; 'none' = no row)")
    p.add_argument("--force", action="store_true", help="run even if the leaderboard has a row for this run id")


def cmd_run(args) -> int:
    from genrec.config import load_config

    cfg = load_config(args.config, args.overrides)
    return _run_and_report(cfg, args.leaderboard or cfg.run.leaderboard, force=args.force)


def _run_and_report(cfg, out: str, run_dir=None, force: bool = False) -> int:
    """Run (or re-evaluate) one point under its run log, append its row unless that run id has one."""
    from pathlib import Path

    from genrec.identity import run_id, train_id
    from genrec.pipeline import check, is_main_process, prepare, run_point
    from genrec.scaling.leaderboard import append_row, done_run_ids, make_row
    from genrec.scaling.runner import _PointLog

    check(cfg)
    data, split = prepare(cfg)
    rid = run_id(cfg, data.fingerprint())
    write = bool(out) and out != "none"
    if write and not force and rid in done_run_ids(out):
        print(f"run {rid} already has a row in {out}: nothing to do (--force reruns it)")
        return 0
    run_dir = Path(run_dir or Path(cfg.run.output_dir) / train_id(cfg, data.fingerprint()))
    run_dir.mkdir(parents=True, exist_ok=True)
    with _PointLog(run_dir / "run.log"):
        res = run_point(cfg, data, split, run_dir)
    if not is_main_process():  # under `accelerate launch` every rank trains and evaluates; rank 0 reports
        return 0
    if write:
        append_row(out, make_row(cfg, res))
    m = res["metrics"]
    print(f"{cfg.run.family}/{cfg.run.model} on {res['data']['name']} ({res['data']['protocol']}, "
          f"{m['users_evaluated']} users, exclude_history={m['exclude_history']}):")
    print("  " + "  ".join(f"{k}={m[k]:.4f}" for k in m if "@" in k and k.split("@")[1] in ("10", "50")
                           or k in ("recall@5", "ndcg@5")))
    print(f"  invalid_rate={m['invalid_rate']:.4f}  target_in_history={m.get('target_in_history', 0):.3f}  "
          f"train_time_s={res['train_time_s']:.1f}  run_id={res['run_id']}" + (f"  -> {out}" if write else ""))
    ci = res["extra"].get("ci95_users", {})
    if ci:
        print("  95% bootstrap over users: " + "  ".join(f"{k} [{lo:.4f}, {hi:.4f}]" for k, (lo, hi) in ci.items()
                                                       if k.endswith("@10")))
    print(f"  run folder: {run_dir}")
    return 0


EVAL_SECTIONS = ("eval.", "decode.")


def cmd_eval(args) -> int:
    """Re-evaluate a trained run folder: its config.yaml plus eval.* / decode.* overrides; no training."""
    from pathlib import Path

    from genrec.config import load_config
    from genrec.errors import ConfigError

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir}: not a genrec run folder (no config.yaml); `genrec run` prints the folder")
    bad = [o for o in args.overrides if not o.strip().startswith(EVAL_SECTIONS)]
    if bad:
        raise ConfigError(f"--set {bad[0]}: genrec eval changes only eval.* and decode.* settings (anything else "
                          f"would change the trained model: use genrec run)")
    cfg = load_config([str(run_dir / "config.yaml")], args.overrides)
    return _run_and_report(cfg, args.leaderboard or cfg.run.leaderboard, run_dir=run_dir, force=args.force)


def cmd_config(args) -> int:
    import yaml

    from genrec.config import load_config, to_dict

    print(yaml.safe_dump(to_dict(load_config(args.config, args.overrides)), sort_keys=False), end="")
    return 0


def cmd_sweep(args) -> int:
    from genrec.scaling.runner import run_sweep

    return run_sweep(args)


def cmd_data(args) -> int:
    from genrec.config import load_config
    from genrec.data import load_data, split_data

    over, files = list(args.overrides), list(args.config)
    if args.name:
        from typing import get_args, get_type_hints

        from genrec.config import DataConfig
        from genrec.errors import ConfigError

        known = get_args(get_type_hints(DataConfig)["source"])
        if args.name not in known:
            raise ConfigError(f"unknown data set {args.name!r} (known: {', '.join(known)}; your own "
                              "file: genrec data csv --set data.path=FILE)")
        over.insert(0, f"data.source={args.name}")
        shipped = DATA_CONFIGS / f"{args.name}.yaml"
        if not files and shipped.is_file():  # the settings every run on it uses (item text templates, ...)
            files = [str(shipped)]
    cfg = load_config(files, over)
    data = load_data(cfg.data)
    split = split_data(data, cfg.data)
    print(f"{data.name}: {data.n_users} users, {data.n_items} items, {data.n_interactions} interactions "
          f"(source: {data.source}; settings: {', '.join(files) or 'defaults'})")
    print(f"  preprocessing: {data.stats}")
    print(f"  split {split.protocol}: {len(split.valid)} valid users, {len(split.test)} test users, "
          f"{sum(len(s) for s in split.train)} train interactions")
    print(f"  data fingerprint {data.fingerprint()}  split fingerprint {split.fingerprint()}")
    return 0


def cmd_leaderboard(args) -> int:
    from genrec.scaling.report import print_leaderboard

    print_leaderboard(args.file, metric=args.metric, group=args.group, vs=args.vs, show=args.show,
                      split=args.split)
    return 0


def cmd_compare(args) -> int:
    from genrec.scaling.paired import print_compare

    print_compare(args.file, args.a, args.b, metric=args.metric, dirs=args.ranks, c=args.c, d=args.d)
    return 0


def cmd_plot(args) -> int:
    from genrec.scaling.plots import plot_file

    for p in plot_file(args.file, out_dir=args.out, metric=args.metric, x=args.x):
        print(p)
    if args.x != "flops":
        from genrec.scaling.verdict import print_verdicts

        print_verdicts(args.file, metric=args.metric)
    return 0


def cmd_encode(args) -> int:
    from genrec.config import load_config
    from genrec.data import load_data
    from genrec.encoders import encode_items

    cfg = load_config(args.config, args.overrides)
    data = load_data(cfg.data)
    emb, info = encode_items(data, cfg.encoder, return_info=True)
    print(f"{cfg.encoder.name}: {emb.shape[0]} items x {emb.shape[1]} dims, {info}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from genrec import __version__

    ap = argparse.ArgumentParser(prog="genrec", description="Scaling benchmark for generative recommendation")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--version", action="version", version=f"genrec {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("run", help="fit and evaluate one configuration; append a leaderboard row", formatter_class=ex,
                       epilog="example: genrec run -c configs/data/ml-100k.yaml -c configs/cf/mf_bpr.yaml "
                              "--set cf.dim=128")
    _config_args(p)
    _row_args(p)
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("eval", help="re-evaluate a trained run folder (other users, K, beams, split); no training",
                       formatter_class=ex, epilog="example: genrec eval runs/3f2a9c1b7d4e --set eval.split=valid "
                                                  "--set eval.max_users=0")
    p.add_argument("run_dir", help="a run folder (genrec run prints it)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="eval.* or decode.* override (repeatable)")
    _row_args(p)
    p.set_defaults(fn=cmd_eval)
    p = sub.add_parser("config", help="print the resolved config (defaults + files + --set) as YAML",
                       formatter_class=ex, epilog="example: genrec config -c configs/runs/sid-ml1m-tiger.yaml "
                                                  "--set decode.num_beams=10")
    _config_args(p)
    p.set_defaults(fn=cmd_config)
    p = sub.add_parser("data", help="load a dataset and print counts and split fingerprints", formatter_class=ex,
                       epilog="example: genrec data ml-1m")
    p.add_argument("name", nargs="?", default="", help="ml-100k, ml-1m, synthetic, ... (with no -c, configs/data/NAME.yaml "
                   "is read where it exists: the settings the runs on NAME use, so the fingerprints match theirs)")
    _config_args(p)
    p.set_defaults(fn=cmd_data)
    p = sub.add_parser("encode", help="encode item texts with the frozen encoder (cached)", formatter_class=ex,
                       epilog="example: genrec encode -c configs/data/ml-1m.yaml -c configs/encoder/mpnet-base.yaml")
    _config_args(p)
    p.set_defaults(fn=cmd_encode)
    p = sub.add_parser("sweep", help="run a scaling sweep (configs/sweeps/*.yaml); rows into runs/<sweep>.csv",
                       description="example: genrec sweep --sweep configs/sweeps/cf_dim.yaml --only 'mf*' --dry-run")
    from genrec.scaling.runner import build_parser as sweep_parser

    sweep_parser(p)
    p.set_defaults(fn=cmd_sweep)
    sub.add_parser("tokenize", help="train (or load cached) a SID tokenizer and print its stats (genrec tokenize -h) "
                   "(-c/--set as for run; --save tokenizers/NAME, --no-cache)")
    p = sub.add_parser("leaderboard", help="print a ranked table (mean +- std over seeds)", formatter_class=ex,
                       epilog="example: genrec leaderboard benchmarks/results/sid_inject_ml1m.csv --metric recall@10 "
                              "--vs inject=none")
    p.add_argument("file")
    p.add_argument("--metric", default="ndcg@10")
    p.add_argument("--group", default="", help="comma-separated columns to group by (default: all axes)")
    p.add_argument("--vs", default="", metavar="COLUMN=VALUE",
                   help="difference of each configuration to the one with COLUMN=VALUE and the same other labels, "
                        "with a Welch 95%% interval over seeds")
    p.add_argument("--show", default="", help="more columns to average over seeds, e.g. collision_rate,codebook_util")
    p.add_argument("--split", default="", choices=["", "test", "valid", "all"],
                   help="rank the rows evaluated on this split (default: test when the file has test rows; a "
                        "sweep's tuning runs are on valid)")
    p.set_defaults(fn=cmd_leaderboard)
    p = sub.add_parser("compare", help="two configurations of a CSV compared user by user (paired bootstrap)",
                       formatter_class=ex, epilog="example: genrec compare benchmarks/results/llm_study_ml100k.csv "
                       "--a 'smollm2-cf-r8-*' --b 'smollm2-plain-r8-*'")
    p.add_argument("file")
    p.add_argument("--a", required=True, help="point glob of side a (all its seeds), e.g. 'smollm2-cf-r8-*'")
    p.add_argument("--b", required=True, help="point glob of side b")
    p.add_argument("--c", help="with --d: compare the differences, (a - b) - (c - d), user by user")
    p.add_argument("--d", help="point glob of side d (see --c)")
    p.add_argument("--metric", default="recall@10")
    p.add_argument("--ranks", action="append", default=[], metavar="DIR",
                   help="a folder of user_ranks_<run id>.npz files (repeatable; the run folders are searched too)")
    p.set_defaults(fn=cmd_compare)
    p = sub.add_parser("plot", help="draw metric-vs-size (or vs training FLOPs) curves to PNG", formatter_class=ex,
                       epilog="example: genrec plot benchmarks/results/recsize_ml1m.csv --x flops")
    p.add_argument("file")
    p.add_argument("--out", default="", help="output folder (default: next to the CSV)")
    p.add_argument("--metric", default="recall@10")
    p.add_argument("--x", choices=("params", "flops"), default="params",
                   help="x axis: params (per family and axis, with power-law fits) or flops (training FLOPs, "
                        "log scale, every family in one panel with the compute frontier: <stem>_flops.png)")
    p.set_defaults(fn=cmd_plot)
    return ap


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    # libraries' routine lines (faiss loader probing, accelerate checkpoints) stay below the console; with -v
    # only genrec's own DEBUG lines are added
    for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub", "sentence_transformers", "accelerate", "faiss",
                  "torch.distributed", "tensorboard"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sweep"]:  # before torch starts CUDA: under accelerate launch, one worker per process
        from genrec.scaling.runner import isolate_rank

        isolate_rank()
    if argv[:1] == ["tokenize"]:  # train / load a SID tokenizer: same -c/--set options, plus --save/--no-cache
        from genrec.sid.__main__ import main as tokenize

        return tokenize(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return args.fn(args)
    except GenrecError as e:
        print(f"genrec: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genrec: interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
