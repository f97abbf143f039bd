"""The `genrec` command line. Every sub-command takes `-c FILE` (repeatable) and `--set a.b=value`.

User errors (bad files, columns, config keys) print one line and exit 2; never a deep stack trace.
"""
from __future__ import annotations

import argparse
import logging
import sys

from genrec.errors import GenrecError

log = logging.getLogger("genrec")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", action="append", default=[], help="YAML config (repeatable, merged in order)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=1e-3 (repeatable)")


def cmd_run(args) -> int:
    from genrec.config import load_config
    from genrec.pipeline import check, run_point
    from genrec.scaling.leaderboard import append_row, make_row

    cfg = load_config(args.config, args.overrides)
    check(cfg)
    res = run_point(cfg)
    row = make_row(cfg, res)
    out = args.leaderboard or cfg.run.leaderboard
    if out and out != "none":
        append_row(out, row)
    m = res["metrics"]
    print(f"{cfg.run.family}/{cfg.run.model} on {res['data']['name']} ({res['data']['protocol']}, "
          f"{m['users_evaluated']} users, exclude_history={m['exclude_history']}):")
    print("  " + "  ".join(f"{k}={m[k]:.4f}" for k in m if "@" in k and k.split("@")[1] in ("10", "50")
                           or k in ("recall@5", "ndcg@5")))
    print(f"  invalid_rate={m['invalid_rate']:.4f}  train_time_s={res['train_time_s']:.1f}  run_id={res['run_id']}"
          + (f"  -> {out}" if out and out != "none" else ""))
    return 0


def cmd_sweep(args) -> int:
    from genrec.scaling.runner import run_sweep

    return run_sweep(args)


def cmd_data(args) -> int:
    from genrec.config import load_config
    from genrec.data import load_data, split_data

    over = list(args.overrides)
    if args.name:
        over.insert(0, f"data.source={args.name}")
    cfg = load_config(args.config, over)
    data = load_data(cfg.data)
    split = split_data(data, cfg.data)
    print(f"{data.name}: {data.n_users} users, {data.n_items} items, {data.n_interactions} interactions "
          f"(source: {data.source})")
    print(f"  preprocessing: {data.stats}")
    print(f"  split {split.protocol}: {len(split.valid)} valid users, {len(split.test)} test users, "
          f"{sum(len(s) for s in split.train)} train interactions")
    print(f"  data fingerprint {data.fingerprint()}  split fingerprint {split.fingerprint()}")
    return 0


def cmd_leaderboard(args) -> int:
    from genrec.scaling.report import print_leaderboard

    print_leaderboard(args.file, metric=args.metric, group=args.group)
    return 0


def cmd_plot(args) -> int:
    from genrec.scaling.plots import plot_file

    for p in plot_file(args.file, out_dir=args.out, metric=args.metric):
        print(p)
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
    ap = argparse.ArgumentParser(prog="genrec", description="Scaling benchmark for generative recommendation")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="fit and evaluate one configuration; append a leaderboard row")
    _config_args(p)
    p.add_argument("--leaderboard", default="", help="CSV to append to (default: run.leaderboard; 'none' = off)")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("data", help="load a dataset and print counts and split fingerprints")
    p.add_argument("name", nargs="?", default="", help="ml-100k, ml-1m, synthetic, ...")
    _config_args(p)
    p.set_defaults(fn=cmd_data)
    p = sub.add_parser("encode", help="encode item texts with the frozen encoder (cached)")
    _config_args(p)
    p.set_defaults(fn=cmd_encode)
    p = sub.add_parser("sweep", help="run a scaling sweep (configs/sweeps/*.yaml); rows into runs/<sweep>.csv",
                       description="example: genrec sweep --sweep configs/sweeps/cf_dim.yaml --only 'mf*' --dry-run")
    from genrec.scaling.runner import build_parser as sweep_parser

    sweep_parser(p)
    p.set_defaults(fn=cmd_sweep)
    sub.add_parser("tokenize", help="train (or load cached) a SID tokenizer and print its stats "
                   "(-c/--set as for run; --save tokenizers/NAME, --no-cache)")
    p = sub.add_parser("leaderboard", help="print a ranked table (mean +- std over seeds)")
    p.add_argument("file")
    p.add_argument("--metric", default="ndcg@10")
    p.add_argument("--group", default="", help="comma-separated columns to group by (default: all axes)")
    p.set_defaults(fn=cmd_leaderboard)
    p = sub.add_parser("plot", help="draw metric-vs-size curves per family and axis to PNG")
    p.add_argument("file")
    p.add_argument("--out", default="", help="output folder (default: next to the CSV)")
    p.add_argument("--metric", default="recall@10")
    p.set_defaults(fn=cmd_plot)
    return ap


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub", "sentence_transformers", "accelerate"):
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
