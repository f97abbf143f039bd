"""The user's own data: interactions and item text from CSV / Parquet / JSON Lines files.

Every frame read here carries two helper columns for dataset.py: `_loc` (where a row is: "row N" of a
CSV or Parquet file, header not counted; "line N" of a JSON Lines file) and `_bad` (why a row of
the file itself is broken, "" when it is not): a last line without a line end whose fields are short or
whose time value is shorter than every other one (a cut-off write), or a JSON line that does not parse.
"""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from genrec.errors import ConfigError, DataError

log = logging.getLogger("genrec")
TAIL_BYTES = 1 << 16


def csv_delimiter(delimiter: str, path: Path) -> str:
    """'' = tab for .tsv/.tab files, else comma; 'tab' or a written '\\t' mean a tab."""
    if not delimiter:
        return "\t" if path.suffix in (".tsv", ".tab") else ","
    sep = {"tab": "\t", "\\t": "\t"}.get(delimiter, delimiter)
    if len(sep) != 1:
        raise ConfigError(f"data.delimiter: expected one character (or 'tab'), got {delimiter!r}")
    return sep


def _last_line(path: Path, encoding: str) -> tuple[str, bool]:
    """(last non-blank line, whether the file ends with a line end)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - TAIL_BYTES))
        tail = f.read().decode(encoding, errors="replace")
    lines = [ln for ln in tail.splitlines() if ln.strip()]
    return (lines[-1] if lines else ""), tail.endswith(("\n", "\r"))


def _mark_csv_tail(df: pd.DataFrame, path: Path, sep: str, encoding: str, time_col: str) -> None:
    """Mark the last row bad when it is short, or cut off mid-value (no line end, shortest time)."""
    line, ended = _last_line(path, encoding)
    fields = next(csv.reader([line], delimiter=sep), [])
    last = df.index[-1]
    if len(fields) < len(df.columns) - 2:
        df.loc[last, "_bad"] = f"the last line {line!r} has {len(fields)} of {len(df.columns) - 2} fields"
    elif not ended and time_col in df.columns and len(df) > 1:
        lengths = df[time_col].astype(str).str.strip().str.len()
        if lengths[last] < lengths.iloc[:-1].min():
            df.loc[last, "_bad"] = (f"the last line {line!r} has no line end and its {time_col} is shorter than "
                                    f"every other one: the file looks cut off")


def _read_csv(path: Path, delimiter: str, encoding: str, time_col: str) -> pd.DataFrame:
    sep = csv_delimiter(delimiter, path)
    df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding=encoding)
    if len(df):
        df["_loc"] = [f"row {i + 1}" for i in range(len(df))]
        df["_bad"] = ""
        _mark_csv_tail(df, path, sep, encoding, time_col)
    return df


def _read_jsonl(path: Path, encoding: str) -> pd.DataFrame:
    """One JSON object per line; a line that does not parse becomes an empty row marked bad."""
    text = path.read_text(encoding=encoding)
    lines = text.splitlines()
    last = max((n for n, ln in enumerate(lines, 1) if ln.strip()), default=0)
    records, locs, bad = [], [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            why = "" if isinstance(obj, dict) else "not a JSON object"
        except json.JSONDecodeError as e:
            obj, why = {}, f"not a JSON object ({e.msg})"
            if n == last and not text.endswith(("\n", "\r")):
                why = f"the last line {line[:60]!r} is cut off (no line end, not a whole JSON object)"
        records.append(obj if isinstance(obj, dict) else {})
        locs.append(f"line {n}")
        bad.append(why)
    df = pd.DataFrame(records, dtype=object)
    if len(df):
        df["_loc"], df["_bad"] = locs, bad
    return df


def _read_parquet(path: Path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    df = df.astype(object).where(df.notna(), "").astype(str)
    if len(df):
        df["_loc"] = [f"row {i + 1}" for i in range(len(df))]
        df["_bad"] = ""
    return df


def read_table(path: str | Path, kind: str, delimiter: str = "", encoding: str = "utf-8",
               time_col: str = "") -> pd.DataFrame:
    p = Path(path)
    if not str(path):
        raise DataError(f"data.path is empty: the {kind} source needs a file")
    if not p.is_file():
        raise DataError(f"data file not found: {p}")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: the file is empty")
    try:
        if kind == "csv":
            df = _read_csv(p, delimiter, encoding, time_col)
        elif kind == "parquet":
            df = _read_parquet(p)
        elif kind == "jsonl":
            df = _read_jsonl(p, encoding)
        else:
            raise DataError(f"unknown table kind {kind!r}")
    except (DataError, ConfigError):
        raise
    except LookupError:
        raise ConfigError(f"data.encoding: unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: not valid {encoding} text (byte {e.start}); set data.encoding "
                        f"(e.g. latin-1 or cp1252)") from None
    except Exception as e:  # noqa: BLE001 - parser errors become one clear line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{p}: could not be read as {kind} ({msg})") from None
    if len(df) == 0:
        raise DataError(f"{p}: no rows")
    return df


def require_columns(df: pd.DataFrame, cols: list[str], path: str | Path, what: str) -> None:
    missing = [c for c in cols if c and c not in df.columns]
    if missing:
        present = [str(c) for c in df.columns if not str(c).startswith("_")]
        hint = ""
        if len(present) == 1 and any(s in present[0] for s in ";\t|,"):
            hint = "; the header reads as one column: set data.delimiter"
        raise DataError(f"{path}: missing column {missing[0]!r} ({what}); columns present: "
                        f"{', '.join(present[:20])}{hint}")


def _drop_bad_items(idf: pd.DataFrame, cfg) -> pd.DataFrame:
    bad = idf["_bad"] != "" if "_bad" in idf else pd.Series(False, index=idf.index)
    if bad.any():
        first = idf.index[bad.to_numpy()][0]
        if cfg.bad_rows != "drop":
            raise DataError(f"{cfg.item_path}: {idf.loc[first, '_loc']}: {idf.loc[first, '_bad']}; fix the file "
                            f"or set data.bad_rows=drop to drop such rows (counted)")
        log.warning("%s: dropped %d bad rows of the item file (data.bad_rows=drop)", cfg.item_path, int(bad.sum()))
        idf = idf[~bad]
    return idf.drop(columns=[c for c in ("_loc", "_bad") if c in idf.columns])


def time_column(cfg) -> str:
    """The configured time column; '' when there is none, which needs data.order=file."""
    col = cfg.time_col or ""
    if not col and cfg.order != "file":
        raise ConfigError("data.time_col is empty: name the time column, or set data.order=file to use the "
                          "row order of the file as time")
    return "" if cfg.order == "file" else col


def load_table_source(cfg) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Interactions renamed to (user, item[, timestamp][, rating], _loc, _bad) and optional items."""
    kind = cfg.source
    tcol = time_column(cfg)
    df = read_table(cfg.path, kind, cfg.delimiter, cfg.encoding, tcol)
    cols = [cfg.user_col, cfg.item_col, tcol] + ([cfg.rating_col] if cfg.rating_col else [])
    require_columns(df, cols, cfg.path, "set data.user_col / item_col / time_col / rating_col")
    ren = {cfg.user_col: "user", cfg.item_col: "item"}
    if tcol:
        ren[tcol] = "timestamp"
    if cfg.rating_col:
        ren[cfg.rating_col] = "rating"
    inter = df[list(ren) + ["_loc", "_bad"]].rename(columns=ren)
    if not tcol:
        inter["timestamp"] = np.arange(len(inter), dtype=np.float64)
    items = None
    if cfg.item_path:
        ikind = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".jsonl": "jsonl",
                 ".json": "jsonl"}.get(Path(cfg.item_path).suffix, kind)
        idf = read_table(cfg.item_path, ikind, cfg.delimiter, cfg.encoding)
        require_columns(idf, [cfg.item_col] + list(cfg.item_text_cols), cfg.item_path,
                        "item file: set data.item_col / item_text_cols")
        items = _drop_bad_items(idf, cfg).rename(columns={cfg.item_col: "item"})
    return inter, items
