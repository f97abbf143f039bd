"""Item embeddings, computed once per (model, weights, texts, data, pooling) and kept as .npy files.

The file under `cache_dir("embeddings")` holds the pooled vectors *before* centre/whiten/normalise
(those are cheap, deterministic and applied on every load), so runs that only differ in them share
one encode. Key = sha256 of: model id + revision (Hub commit or weights sha256), the rendered item
texts, `data.fingerprint()`, pooling, max_length and a code version. Beside each `<key>.npy`, a
`.json` records the provenance and a `.texts` file the text of each row: a data subset whose texts
are all rows of a cached entry (same model, revision, pooling) is gathered from it without running
the model (cache "derived"), so the data-fraction axis never re-encodes. When the model itself is
not on this machine (e.g. a GPU box that received only the embeddings folder), an entry whose key
matches everything but the revision is reused.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from genrec.encoders.resolve import MODELS, ResolvedModel, _slug, resolve_model
from genrec.errors import DataError
from genrec.paths import cache_dir

log = logging.getLogger("genrec")
CODE_VERSION = 1  # bump when pooling code changes what a key means


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def texts_hash(texts: list[str]) -> str:
    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]


def request_spec(data, enc_cfg) -> dict:
    """Everything in the key except the model revision (known without the model)."""
    name = MODELS[enc_cfg.name].model_id if enc_cfg.name in MODELS else enc_cfg.name
    return {"v": CODE_VERSION, "model": name, "texts": texts_hash(list(data.item_text)),
            "data": data.fingerprint(), "n": len(data.item_text),
            "pooling": enc_cfg.pooling, "max_length": int(enc_cfg.max_length)}


def cache_key(req: dict, resolved: ResolvedModel) -> str:
    full = dict(req, model_id=resolved.model_id, revision=resolved.revision, kind=resolved.kind)
    return _digest(full)[:20]


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def _atomic_save(path: Path, arr: np.ndarray, meta: dict, texts: list[str]) -> None:
    """<key>.npy (the vectors), <key>.texts (row -> text, for reuse by subsets), <key>.json (provenance)."""
    _atomic_write(path, lambda f: np.save(f, arr))
    _atomic_write(path.with_suffix(".texts"), lambda f: f.write(json.dumps(texts).encode()))
    _atomic_write(path.with_suffix(".json"), lambda f: f.write(json.dumps(meta, indent=1).encode()))


def _load(path: Path, n: int) -> np.ndarray | None:
    """The cached array, or None (with a log line saying why) unless it is exactly what its metadata says:
    float32, [n, dims] with dims from the `.json` beside it, every value finite."""
    why = _check_entry(path, n)
    if isinstance(why, str):
        log.warning("embedding cache %s is not usable (%s); recomputing", path.name, why)
        return None
    return why


def _check_entry(path: Path, n: int) -> np.ndarray | str:
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        dims = int(meta["dims"])
    except (OSError, ValueError, KeyError, TypeError):
        return "its .json metadata is missing or unreadable"
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        return f"unreadable: {type(e).__name__}"
    if arr.dtype != np.float32:
        return f"dtype {arr.dtype}, expected float32"
    if arr.ndim != 2 or arr.shape != (n, dims):
        return f"shape {arr.shape}, expected ({n}, {dims}) from its metadata"
    if not np.isfinite(arr).all():
        return "it holds NaN or inf"
    return arr


def _find_without_model(req: dict) -> tuple[Path, dict] | None:
    """An entry matching `req` (all but the revision); the newest when several."""
    hits = []
    for meta_path in cache_dir("embeddings").glob("*.json"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("request") == req and meta_path.with_suffix(".npy").exists():
            hits.append((meta.get("created", 0), meta_path.with_suffix(".npy"), meta))
    if not hits:
        return None
    _, path, meta = max(hits, key=lambda h: h[0])
    return path, meta


def _gather_from_superset(meta: dict, req: dict, texts: list[str]) -> tuple[np.ndarray, Path] | None:
    """Rows of an entry of the same model, revision and pooling that holds every text in `texts`.

    A data subset (data_fraction, k-core, another split of the same catalogue) changes the data
    fingerprint but not the vector of a text, so it reuses those rows instead of running the model.
    """
    same = ("v", "pooling", "max_length")
    for meta_path in sorted(cache_dir("embeddings").glob("*.json")):
        try:
            m = json.loads(meta_path.read_text())
            if any(m.get(k) != meta[k] for k in ("model_id", "revision", "kind")) or \
                    any(m.get("request", {}).get(k) != req[k] for k in same):
                continue
            src_texts = json.loads(meta_path.with_suffix(".texts").read_text())
        except (OSError, ValueError):
            continue
        index = {t: i for i, t in enumerate(src_texts)}
        rows = [index.get(t) for t in texts]
        if None in rows:
            continue
        arr = _load(meta_path.with_suffix(".npy"), len(src_texts))
        if arr is not None:
            return arr[np.asarray(rows, dtype=np.int64)], meta_path.with_suffix(".npy")
    return None


def encode_items(data, enc_cfg, return_info: bool = False, progress: bool = True):
    """float32 [n_items, d] embeddings of `data.item_text` (row i = item index i), cached.

    With return_info=True returns (emb, info): info has cache ("hit" / "derived" = gathered from a
    cached superset of the texts / "miss" = encoded), seconds, encode_s,
    n, dims, model_id, revision, source, file.
    """
    from genrec.encoders.text import TextEncoder, postprocess

    t0 = time.perf_counter()
    texts = [str(t) for t in data.item_text]
    if not texts:
        raise DataError(f"{data.name}: no item texts to encode")
    req = request_spec(data, enc_cfg)
    try:
        resolved = resolve_model(enc_cfg.name, allow_download=False)
    except DataError:
        resolved = None
    raw, meta, path = None, None, None
    if resolved is None:
        found = _find_without_model(req)
        if found is not None:
            path, meta = found
            raw = _load(path, len(texts))
            if raw is not None:
                log.info("model %s not on this machine; reusing cached embeddings %s (revision %s)",
                         enc_cfg.name, path.name, meta.get("revision"))
        if raw is None:
            resolved = resolve_model(enc_cfg.name)  # may download / build
    if resolved is not None:
        path = cache_dir("embeddings") / f"{_slug(resolved.model_id)[-40:]}-{cache_key(req, resolved)}.npy"
        raw = _load(path, len(texts)) if path.exists() else None
        meta = {"model_id": resolved.model_id, "revision": resolved.revision, "source": resolved.source,
                "kind": resolved.kind}
    status = "hit" if raw is not None else "miss"
    encode_s = 0.0
    if raw is None:
        found = _gather_from_superset(meta, req, texts)
        if found is not None:
            raw, src = found
            status = "derived"
            meta.update(derived_from=src.name)
            log.info("all %d item texts are rows of cached %s; no encoding needed", len(texts), src.name)
    if raw is None:
        log.info("encoding %d item texts of %s with %s (%s)", len(texts), data.name, enc_cfg.name, resolved.source)
        t1 = time.perf_counter()
        raw = TextEncoder(enc_cfg, resolved=resolved, progress=progress).encode_raw(texts)
        encode_s = time.perf_counter() - t1
    if status != "hit":
        meta.update(request=req, created=time.time(), encode_s=round(encode_s, 2), dims=int(raw.shape[1]),
                    dataset=data.name, example_text=texts[0])
        _atomic_save(path, raw, meta, texts)
    elif not path.with_suffix(".texts").exists():  # entries written before .texts existed
        _atomic_write(path.with_suffix(".texts"), lambda f: f.write(json.dumps(texts).encode()))
    emb = postprocess(raw, center=enc_cfg.center, whiten=enc_cfg.whiten, normalize=enc_cfg.normalize)
    info = {"cache": status, "seconds": round(time.perf_counter() - t0, 2),
            "encode_s": round(encode_s, 2), "n": int(emb.shape[0]), "dims": int(emb.shape[1]),
            "model_id": meta.get("model_id"), "revision": meta.get("revision"), "source": meta.get("source"),
            "file": str(path)}
    log.info("embeddings %s: %s in %.2f s (%d x %d)", path.name, info["cache"], info["seconds"], *emb.shape)
    return (emb, info) if return_info else emb
