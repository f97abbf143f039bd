"""Amazon Reviews: 2014 / 2018 5-core JSON (+ metadata) and the 2023 release, from local files.

`data.path` is the reviews file (.json / .jsonl, optionally .gz), `data.item_path` the metadata file.
A path starting with `hf:` (e.g. `hf:McAuley-Lab/Amazon-Reviews-2023/raw_review_All_Beauty`) loads
through HF `datasets` when the Hub is reachable.
"""
from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path

import pandas as pd

from genrec.errors import DataError

# field names per release: (user, item, time, rating); 2023 timestamps are milliseconds
REVIEW_FIELDS = [("reviewerID", "asin", "unixReviewTime", "overall"),
                 ("user_id", "parent_asin", "timestamp", "rating")]


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _records(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"Amazon file not found: {path}")
    out = []
    with _open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                try:  # the 2014 metadata files are Python dict literals, one per line
                    out.append(ast.literal_eval(line))
                except (ValueError, SyntaxError):
                    raise DataError(f"{path}:{n}: not a JSON object") from None
    if not out:
        raise DataError(f"{path}: the file is empty")
    return out


def _hf_records(spec: str) -> list[dict]:
    try:
        import datasets
    except ImportError:  # pragma: no cover
        raise DataError("the hf: source needs the `datasets` package") from None
    parts = spec[3:].split("/")
    repo, name = "/".join(parts[:2]), (parts[2] if len(parts) > 2 else None)
    try:
        ds = datasets.load_dataset(repo, name, split="full", trust_remote_code=False)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"could not load {spec} through HF datasets ({type(e).__name__})") from None
    return list(ds)


def load_amazon(path: str, item_path: str) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    recs = _hf_records(path) if path.startswith("hf:") else _records(Path(path))
    keys = recs[0].keys()
    for u, i, t, r in REVIEW_FIELDS:
        if {u, i, t} <= set(keys):
            break
    else:
        raise DataError(f"{path}: not an Amazon reviews file (expected reviewerID/asin/unixReviewTime "
                        f"or user_id/parent_asin/timestamp; got {', '.join(list(keys)[:8])})")
    inter = pd.DataFrame({"user": [str(x.get(u, "")) for x in recs], "item": [str(x.get(i, "")) for x in recs],
                          "timestamp": [x.get(t) for x in recs], "rating": [x.get(r, "") for x in recs]})
    if t == "timestamp":
        inter["timestamp"] = pd.to_numeric(inter["timestamp"], errors="coerce") / 1000.0
    items = None
    if item_path:
        meta = _hf_records(item_path) if item_path.startswith("hf:") else _records(Path(item_path))
        key = "parent_asin" if "parent_asin" in meta[0] else "asin"
        rows = []
        for m in meta:
            cats = m.get("categories") or m.get("category") or m.get("main_category") or ""
            if isinstance(cats, list):
                flat = [c for sub in cats for c in (sub if isinstance(sub, list) else [sub])]
                cats = ", ".join(dict.fromkeys(map(str, flat)))
            rows.append({"item": str(m.get(key, "")), "title": str(m.get("title", "") or ""),
                         "brand": str(m.get("brand", "") or m.get("store", "") or ""), "categories": str(cats)})
        items = pd.DataFrame(rows).drop_duplicates("item")
    return inter, items
