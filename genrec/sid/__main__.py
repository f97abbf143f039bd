"""Train (or load from the stage cache) a SID tokenizer for a dataset + encoder and print its statistics.

    python -m genrec.sid -c configs/data/ml-1m.yaml -c configs/encoder/mpnet-base.yaml \
        -c configs/sid/rqvae-3x256.yaml [--set sid.epochs=100] [--save tokenizers/NAME] [--no-cache]
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from genrec.errors import ConfigError, GenrecError


def is_tokenizer_folder(path: Path) -> bool:
    """A folder written by SIDTokenizer.save_pretrained (its config.json names the genrec format)."""
    from genrec.sid.tokenizer import FORMAT

    try:
        return json.loads((path / "config.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_save_target(dest: Path, overwrite: bool) -> None:
    """--save replaces only an empty folder or a genrec tokenizer folder, unless --overwrite is given."""
    if not dest.exists() or overwrite:
        return
    if dest.is_dir() and (not any(dest.iterdir()) or is_tokenizer_folder(dest)):
        return
    kind = "folder" if dest.is_dir() else "file"
    raise ConfigError(f"--save {dest}: an existing {kind} that is not a genrec tokenizer folder; choose another "
                      f"path, or add --overwrite to replace it")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="genrec tokenize", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="example: genrec tokenize -c configs/data/ml-1m.yaml -c configs/encoder/mpnet-base.yaml "
                                        "-c configs/sid/rqvae-3x256.yaml --save tokenizers/my-tokenizer")
    ap.add_argument("-c", "--config", action="append", default=[], help="YAML config (repeatable, merged in order)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--save", default="", help="also copy the tokenizer folder here (e.g. tokenizers/NAME)")
    ap.add_argument("--no-cache", action="store_true", help="train even when a cached tokenizer exists")
    ap.add_argument("--overwrite", action="store_true",
                    help="let --save replace an existing folder that is not a genrec tokenizer folder")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        from genrec.config import load_config
        from genrec.data import load_data
        from genrec.sid.tokenizer import tokenizer_for

        cfg = load_config(args.config, args.overrides)
        if args.save:
            check_save_target(Path(args.save), args.overwrite)
        data = load_data(cfg.data)
        t0 = time.perf_counter()
        tok, emb, info = tokenizer_for(data, cfg, fresh=args.no_cache)
        wall = max(0.0, time.perf_counter() - t0 - float(info.get("seconds") or 0))  # tokenizer stage only
        print(f"{data.name}: {emb.shape[0]} items x {emb.shape[1]} dims from {info['encoder_id']} "
              f"(cache {info['cache']})")
        s = tok.stats
        print(repr(tok))
        print(f"  collision_rate={s['collision_rate']:.4f} max_group={s['max_group_size']} "
              f"unique_sids={s['n_unique_sids']}/{s['n_items']}")
        print(f"  codebook_util={s['codebook_util']:.4f} per level {[round(u, 4) for u in s['codebook_util_per_level']]}")
        print(f"  codebook_perplexity={s['codebook_perplexity']:.2f} per level "
              f"{[round(p, 2) for p in s['codebook_perplexity_per_level']]}")
        print(f"  recon_error={s['recon_error']:.6g} (input variance {s['input_mse_to_mean']:.6g})  "
              f"train_time_s={s['train_time_s']:.1f}  this call {wall:.1f} s")
        if s.get("recon_loss_curve"):
            print(f"  train recon loss (standardised) every ~10% of epochs: "
                  f"{[round(v, 4) for v in s['recon_loss_curve']]}  codes restarted: {s.get('codes_restarted')}")
        if args.save:
            dest = Path(args.save)
            check_save_target(dest, args.overwrite)
            if dest.exists():
                shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
            tok.save_pretrained(dest)
            size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
            print(f"  saved {dest} ({size / 1e6:.2f} MB)")
        print(json.dumps({k: v for k, v in s.items() if not isinstance(v, list)}))
        return 0
    except GenrecError as e:
        print(f"genrec: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
