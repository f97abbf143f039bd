"""Packed data: a dataset after genrec's preprocessing, kept as integer index sequences in one .npz.

A machine without network (a lent GPU) cannot fetch MovieLens; benchmarks/gpu_prepare.py packs what a
run needs instead: per user, the chronological item indices (genrec's order: users and items indexed by
sorted raw id, ties in file order). No raw ids, titles, ratings or timestamps are stored, so item texts
are placeholders ("item 17") and the data fingerprint differs from the original's; the split, which only
depends on the index sequences, is checked against the stored split fingerprint.

Selected by a `data.path` ending in .npz (any data.source; it must name the packed dataset):

    data: {source: ml-1m, path: benchmarks/gpu_pack/ml-1m.npz}

Layout: `items` (int16/int32, all sequences concatenated), `offsets` (int64, n_users + 1), `meta` (a JSON
string: name, source, n_users, n_items, n_interactions, data_fingerprint, split_fingerprint, protocol).
Filters (data_fraction < 1, kcore, min_rating) and the temporal split need what is not stored: DataError.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from genrec.data.dataset import RecData, split_data
from genrec.errors import DataError


def pack_arrays(data: RecData, split_fingerprint: str, protocol: str) -> dict:
    """The arrays of a pack for `data` (see the module docstring)."""
    lens = np.array([len(s) for s in data.sequences], dtype=np.int64)
    dtype = np.int16 if data.n_items < 2**15 else np.int32
    meta = {"format": "genrec-packed", "version": 1, "name": data.name, "source": data.source,
            "n_users": data.n_users, "n_items": data.n_items, "n_interactions": data.n_interactions,
            "data_fingerprint": data.fingerprint(), "split_fingerprint": split_fingerprint, "protocol": protocol}
    return {"items": np.concatenate(data.sequences).astype(dtype), "offsets": np.concatenate([[0], np.cumsum(lens)]),
            "meta": np.array(json.dumps(meta, sort_keys=True))}


def save_packed(path: str | Path, data: RecData, split_fingerprint: str, protocol: str = "loo") -> dict:
    arrays = pack_arrays(data, split_fingerprint, protocol)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return json.loads(str(arrays["meta"]))


def read_meta(path: str | Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["meta"]))


def load_packed(cfg) -> RecData:
    """RecData from the pack at `cfg.path` (a DataConfig); checks the split against the stored fingerprint."""
    path = Path(cfg.path)
    if not path.is_file():
        raise DataError(f"data.path: packed data {path} not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            items, offsets, meta = z["items"].astype(np.int64), z["offsets"], json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"data.path: {path} is not a genrec pack ({type(e).__name__}: {e})") from None
    name = meta["name"]
    if cfg.source != name:
        raise DataError(f"data.path: {path} packs {name!r}, but data.source is {cfg.source!r}")
    unsupported = [k for k, bad in (("data_fraction", cfg.data_fraction != 1), ("kcore", cfg.kcore > 0),
                                    ("min_rating", cfg.min_rating > 0), ("split", cfg.split != "loo")) if bad]
    if unsupported:
        raise DataError(f"data.path: packed data is already preprocessed (index sequences only); "
                        f"{', '.join(unsupported)} cannot be applied to it")
    seqs = [items[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    n_items = int(meta["n_items"])
    texts = [f"item {i}" for i in range(n_items)]
    data = RecData(name, f"packed:{path.name} (of {meta.get('source', '?')})",
                   np.array([f"u{u}" for u in range(len(seqs))]), np.array([f"i{i}" for i in range(n_items)]),
                   texts, list(texts), seqs, [np.arange(len(s), dtype=np.float64) for s in seqs],
                   {"packed": str(path), "original_data_fingerprint": meta.get("data_fingerprint")})
    got = split_data(data, cfg).fingerprint()
    if got != meta["split_fingerprint"]:
        raise DataError(f"data.path: {path}: split fingerprint {got} != packed {meta['split_fingerprint']} "
                        "(damaged or edited pack)")
    return data
