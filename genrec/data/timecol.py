"""The time column of an interactions table: one type and one unit for the whole column.

- A null or empty value is a bad row.
- The column holds numbers when most of its non-empty values are numbers, else dates; a value that
  does not read as the column's type is a bad row (a date column never turns into numbers, or back).
- Numbers: the unit follows the median magnitude of the column: seconds below 1e11, milliseconds
  below 1e14, microseconds below 1e17, else nanoseconds; all are converted to seconds.
- In seconds, a time must lie in [0, 2100-01-01): a negative or later time is a bad row.

`parse_times` returns the seconds and, per row, why it is bad ("" when it is good); what happens to a
bad row (an error naming it, or a counted drop) is decided by `data.bad_rows` in dataset.py.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

FAR_FUTURE = 4102444800.0  # 2100-01-01T00:00:00Z in seconds
UNITS = ((1e11, 1.0, "seconds"), (1e14, 1e3, "milliseconds"), (1e17, 1e6, "microseconds"))


def is_null(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and v.strip() == ""


def numeric_unit(values: np.ndarray) -> tuple[float, str]:
    """(divisor to seconds, unit name) from the median magnitude of finite values."""
    finite = np.abs(values[np.isfinite(values)])
    mid = float(np.median(finite)) if len(finite) else 0.0
    for limit, div, name in UNITS:
        if mid < limit:
            return div, name
    return 1e9, "nanoseconds"


def _dates_to_seconds(col: pd.Series) -> pd.Series:
    dt = pd.to_datetime(col, errors="coerce", utc=True)
    return (dt - pd.Timestamp(0, tz="UTC")).dt.total_seconds()


def parse_times(col: pd.Series, name: str = "timestamp") -> tuple[np.ndarray, pd.Series, str]:
    """(seconds float64 with NaN where bad, reason per row ("" = good), the column's kind)."""
    null = col.map(is_null).astype(bool)
    num = pd.to_numeric(col.where(~null, None), errors="coerce")
    numeric = num.notna() & ~null
    n_values = int((~null).sum())
    reasons = pd.Series("", index=col.index, dtype=object)
    reasons[null] = f"{name} is empty"
    if n_values and 2 * int(numeric.sum()) >= n_values:
        div, kind = numeric_unit(num[numeric].to_numpy(dtype=np.float64))
        sec = num.to_numpy(dtype=np.float64) / div
        reasons[~null & ~numeric] = f"{name} is not a number (the column holds numbers, in {kind})"
        finite = np.isfinite(sec)
        reasons[~null & numeric & ~finite] = f"{name} is not a finite number"
    else:
        kind = "dates"
        sec = np.full(len(col), np.nan)
        if n_values:
            sec[(~null).to_numpy()] = _dates_to_seconds(col[~null]).to_numpy(dtype=np.float64)
        reasons[~null & np.isnan(sec)] = f"{name} is non-numeric and not a readable date (the column holds dates)"
    ok = (reasons == "").to_numpy()
    low, high = ok & (sec < 0), ok & (sec >= FAR_FUTURE)
    reasons[low] = f"{name} is before 1970 (negative in seconds)"
    reasons[high] = f"{name} is after 2100 (in {kind}): out of range"
    sec = np.where((reasons == "").to_numpy(), sec, np.nan)
    return sec, reasons, kind
