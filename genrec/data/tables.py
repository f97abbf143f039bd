"""The user's own data: interactions and item text from CSV / Parquet / JSON Lines files."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from genrec.errors import DataError


def read_table(path: str | Path, kind: str) -> pd.DataFrame:
    p = Path(path)
    if not str(path):
        raise DataError(f"data.path is empty: the {kind} source needs a file")
    if not p.is_file():
        raise DataError(f"data file not found: {p}")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: the file is empty")
    try:
        if kind == "csv":
            sep = "\t" if p.suffix in (".tsv", ".tab") else ","
            df = pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False)
        elif kind == "parquet":
            df = pd.read_parquet(p).astype(str)
        elif kind == "jsonl":
            df = pd.read_json(p, lines=True, dtype=False)
        else:
            raise DataError(f"unknown table kind {kind!r}")
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - parser errors become one clear line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{p}: could not be read as {kind} ({msg})") from None
    if len(df) == 0:
        raise DataError(f"{p}: no rows")
    return df


def require_columns(df: pd.DataFrame, cols: list[str], path: str | Path, what: str) -> None:
    missing = [c for c in cols if c and c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column {missing[0]!r} ({what}); columns present: "
                        f"{', '.join(map(str, df.columns[:20]))}")


def load_table_source(cfg) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Interactions renamed to (user, item, timestamp[, rating]) and optional items (item, text cols)."""
    kind = cfg.source
    df = read_table(cfg.path, kind)
    cols = [cfg.user_col, cfg.item_col, cfg.time_col] + ([cfg.rating_col] if cfg.rating_col else [])
    require_columns(df, cols, cfg.path, "set data.user_col / item_col / time_col / rating_col")
    ren = {cfg.user_col: "user", cfg.item_col: "item", cfg.time_col: "timestamp"}
    if cfg.rating_col:
        ren[cfg.rating_col] = "rating"
    inter = df[list(ren)].rename(columns=ren)
    items = None
    if cfg.item_path:
        ikind = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".jsonl": "jsonl",
                 ".json": "jsonl"}.get(Path(cfg.item_path).suffix, kind)
        idf = read_table(cfg.item_path, ikind)
        require_columns(idf, [cfg.item_col] + list(cfg.item_text_cols), cfg.item_path,
                        "item file: set data.item_col / item_text_cols")
        items = idf.rename(columns={cfg.item_col: "item"})
    return inter, items
