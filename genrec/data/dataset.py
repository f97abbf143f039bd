"""From raw frames to a preprocessed `RecData` and a reproducible `Split`.

Order of operations (each drop is counted in `RecData.stats` and logged):
empty ids -> bad rows (a broken last line, an empty / unreadable / out-of-range time: an error, or
with data.bad_rows=drop a counted drop; see timecol.py) -> dedup exact rows -> min_rating -> k-core
-> data_fraction (users) -> users with too few interactions -> index users/items (sorted raw ids)
-> per-user chronological order, ties kept in file order.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from genrec.data.itemtext import check_item_texts, item_texts
from genrec.data.timecol import is_null, parse_times
from genrec.errors import ConfigError, DataError

log = logging.getLogger("genrec")


@dataclass
class RecData:
    name: str
    source: str
    user_ids: np.ndarray  # raw ids, index = user index
    item_ids: np.ndarray  # raw ids, index = item index
    item_text: list[str]
    item_titles: list[str]
    sequences: list[np.ndarray]  # per user, chronological item indices
    timestamps: list[np.ndarray]
    stats: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(self.name.encode())
        for s in self.sequences:
            h.update(s.astype(np.int64).tobytes())
            h.update(b"|")
        h.update("\x00".join(self.item_text).encode())
        return h.hexdigest()[:16]


@dataclass
class EvalSet:
    users: np.ndarray  # int64 user indices
    histories: list[np.ndarray]
    targets: np.ndarray  # int64 item indices

    def __len__(self) -> int:
        return len(self.users)

    def head(self, n: int) -> "EvalSet":
        if n <= 0 or n >= len(self):
            return self
        return EvalSet(self.users[:n], self.histories[:n], self.targets[:n])

    def sample(self, n: int, seed: int) -> "EvalSet":
        """n users drawn without replacement with numpy's default_rng(seed), kept in their original order:
        the same users for every model evaluated on this split (n <= 0 or >= len: all users)."""
        if n <= 0 or n >= len(self):
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return EvalSet(self.users[keep], [self.histories[i] for i in keep], self.targets[keep])

    def select(self, max_users: int, sample_seed: int = -1) -> "EvalSet":
        """eval.max_users / eval.sample_seed: the first max_users users, or a seeded sample of them."""
        return self.head(max_users) if sample_seed < 0 else self.sample(max_users, sample_seed)


@dataclass
class Split:
    protocol: str
    train: list[np.ndarray]  # per-user training sequences (may be empty)
    valid: EvalSet
    test: EvalSet

    def fold_valid(self) -> "Split":
        """The same split with each validation target appended to its user's training sequence (the
        validation item becomes a training target; the test set is unchanged). For refits and for
        protocols that hold out only the test item."""
        train = [np.asarray(s, dtype=np.int64) for s in self.train]
        for u, t in zip(self.valid.users.tolist(), self.valid.targets.tolist()):
            train[u] = np.append(train[u], np.int64(t))
        return Split(f"{self.protocol}+valid-in-train", train, self.valid, self.test)

    def train_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        users = np.concatenate([np.full(len(s), u, dtype=np.int64) for u, s in enumerate(self.train)])
        items = np.concatenate([s for s in self.train]).astype(np.int64)
        return users, items

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.protocol.encode())
        for s in self.train:
            h.update(s.astype(np.int64).tobytes() + b"|")
        for es in (self.valid, self.test):
            h.update(es.users.tobytes() + es.targets.tobytes())
            for s in es.histories:
                h.update(s.astype(np.int64).tobytes() + b"|")
        return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- preprocessing


def _ids(col: pd.Series) -> pd.Series:
    """Ids as strings; a null id (None / NaN in JSON or Parquet) becomes '' and is dropped as empty."""
    return col.map(lambda v: "" if is_null(v) else str(v)).astype(str)


def _bad_rows(df: pd.DataFrame, bad: pd.Series, locs: pd.Series | None, cfg, where: str,
              stats: dict) -> pd.DataFrame:
    """Rows with a reason: a DataError naming the first one, or with data.bad_rows=drop, a counted drop."""
    mask = (bad != "").to_numpy()
    if not mask.any():
        return df
    first = df.index[mask][0]
    loc = locs[first] if locs is not None else f"row {int(first) + 1}"
    value = df.loc[first, "timestamp"] if "timestamp" in df.columns else ""
    shown = "" if bad[first].startswith("the last line") else f" (value {value!r})"
    what = f"{loc}: {bad[first]}{shown}"
    n = int(mask.sum())
    if getattr(cfg, "bad_rows", "error") == "drop":
        stats["dropped_bad_rows"] = n
        log.warning("%s: dropped %d bad rows (data.bad_rows=drop); first: %s", where, n, what)
        return df[~mask]
    more = f" ({n - 1} more bad rows)" if n > 1 else ""
    raise DataError(f"{where}: {what}{more}; fix the file, or set data.bad_rows=drop to drop bad rows (counted)")


def _kcore(df: pd.DataFrame, k: int) -> pd.DataFrame:
    while True:
        uc = df["user"].map(df["user"].value_counts())
        ic = df["item"].map(df["item"].value_counts())
        keep = (uc >= k) & (ic >= k)
        if keep.all():
            return df
        df = df[keep]


def build_recdata(inter: pd.DataFrame, items: pd.DataFrame | None, cfg, name: str, source: str,
                  where: str = "") -> RecData:
    where = where or name
    if len(inter) == 0:
        raise DataError(f"{where}: no interactions")
    stats: dict = {"rows_read": int(len(inter))}
    df = inter.copy()
    bad = df.pop("_bad") if "_bad" in df.columns else pd.Series("", index=df.index, dtype=object)
    locs = df.pop("_loc") if "_loc" in df.columns else None
    df["user"] = _ids(df["user"])
    df["item"] = _ids(df["item"])
    empty = ((df["user"] == "") | (df["item"] == "")) & (bad == "")
    if empty.any():
        stats["dropped_empty_ids"] = int(empty.sum())
        df, bad = df[~empty], bad[~empty]
    if getattr(cfg, "order", "time") == "file":
        df["ts"] = np.arange(len(df), dtype=np.float64)  # the row order is the time
    else:
        sec, reasons, kind = parse_times(df["timestamp"])
        df["ts"] = sec
        bad = bad.where(bad != "", reasons)
        stats["time_unit"] = kind
    df = _bad_rows(df, bad, locs, cfg, where, stats)
    df["order"] = np.arange(len(df))  # file order: the stable tie-break
    if cfg.dedup:
        before = len(df)
        df = df.drop_duplicates(["user", "item", "ts"])
        stats["dropped_duplicates"] = before - len(df)
    if cfg.min_rating > 0:
        if "rating" not in df.columns:
            raise DataError(f"{where}: data.min_rating is set but there is no rating column (data.rating_col)")
        r = pd.to_numeric(df["rating"], errors="coerce")
        before = len(df)
        df = df[r >= cfg.min_rating]
        stats["dropped_low_rating"] = before - len(df)
    if cfg.kcore > 0:
        before = len(df)
        df = _kcore(df, cfg.kcore)
        stats["dropped_kcore"] = before - len(df)
    if not 0 < cfg.data_fraction <= 1:
        raise DataError(f"data.data_fraction must be in (0, 1], got {cfg.data_fraction}")
    if cfg.data_fraction < 1:
        users = np.sort(df["user"].unique())
        rng = np.random.default_rng(cfg.fraction_seed)
        keep = set(rng.choice(users, size=max(1, int(round(len(users) * cfg.data_fraction))), replace=False))
        before = len(df)
        df = df[df["user"].isin(keep)]
        stats["dropped_data_fraction"] = before - len(df)
    counts = df["user"].map(df["user"].value_counts())
    short = counts < cfg.min_user_interactions
    if short.any():
        stats["dropped_short_users"] = int(df.loc[short, "user"].nunique())
        stats["dropped_short_user_rows"] = int(short.sum())
        df = df[~short]
    if len(df) == 0:
        raise DataError(f"{where}: no interactions left after filtering ({stats})")
    df = df.sort_values(["user", "ts", "order"], kind="stable")
    user_ids, uidx = np.unique(df["user"].to_numpy(), return_inverse=True)
    item_ids, iidx = np.unique(df["item"].to_numpy(), return_inverse=True)
    bounds = np.flatnonzero(np.diff(uidx)) + 1
    sequences = [s.astype(np.int64) for s in np.split(iidx, bounds)]
    times = np.split(df["ts"].to_numpy(), bounds)
    texts, titles, missing = item_texts(items, item_ids, cfg.text_template, cfg.title_template)
    if missing:
        stats["items_without_metadata"] = missing
    check_item_texts(items, item_ids, texts, missing, cfg, where, stats)
    dropped = {k: v for k, v in stats.items() if k.startswith("dropped") and v}
    if dropped:
        log.info("%s: %s", name, ", ".join(f"{k}={v}" for k, v in dropped.items()))
    return RecData(name, source, user_ids, item_ids, texts, titles, sequences, list(times), stats)


# ----------------------------------------------------------------------------- splits


def split_data(data: RecData, cfg) -> Split:
    if cfg.split == "loo":
        return _split_loo(data)
    return _split_temporal(data, cfg.temporal_cut)


def _split_loo(data: RecData) -> Split:
    short = [u for u, s in enumerate(data.sequences) if len(s) < 3]
    if short:
        raise DataError(f"{data.name}: leave-one-out needs >= 3 interactions per user; "
                        f"{len(short)} users have fewer (raise data.min_user_interactions)")
    train = [s[:-2] for s in data.sequences]
    users = np.arange(data.n_users, dtype=np.int64)
    valid = EvalSet(users, [s[:-2] for s in data.sequences], np.array([s[-2] for s in data.sequences]))
    test = EvalSet(users.copy(), [s[:-1] for s in data.sequences], np.array([s[-1] for s in data.sequences]))
    return Split("loo", train, valid, test)


def _split_temporal(data: RecData, cut: list[float]) -> Split:
    if len(cut) != 2 or not 0 < cut[0] < cut[1] < 1:
        raise DataError(f"data.temporal_cut must be two increasing quantiles in (0, 1), got {cut}")
    all_t = np.concatenate(data.timestamps)
    t_valid, t_test = np.quantile(all_t, cut)
    train, vu, vh, vt, tu, th, tt = [], [], [], [], [], [], []
    for u, (s, t) in enumerate(zip(data.sequences, data.timestamps)):
        n_train = int(np.searchsorted(t, t_valid, side="left"))
        n_before_test = int(np.searchsorted(t, t_test, side="left"))
        train.append(s[:n_train])
        if n_train < n_before_test and n_train > 0:
            vu.append(u), vh.append(s[:n_train]), vt.append(s[n_train])
        if n_before_test < len(s) and n_before_test > 0:
            tu.append(u), th.append(s[:n_before_test]), tt.append(s[n_before_test])
    if not tu:
        raise DataError(f"{data.name}: the temporal split left no test users (temporal_cut={cut})")
    mk = lambda u, h, t: EvalSet(np.array(u, dtype=np.int64), h, np.array(t, dtype=np.int64))  # noqa: E731
    return Split("temporal", train, mk(vu, vh, vt), mk(tu, th, tt))


# ----------------------------------------------------------------------------- entry point


def load_data(cfg) -> RecData:
    """Load and preprocess the dataset named by a DataConfig."""
    src = cfg.source
    if str(cfg.path).endswith(".npz"):  # packed index sequences (genrec/data/packed.py), e.g. on a GPU box
        return __import__("genrec.data.packed", fromlist=["load_packed"]).load_packed(cfg)
    if src in ("ml-100k", "ml-1m"):
        from genrec.data.movielens import load_movielens

        inter, items, how = load_movielens(src)
        return build_recdata(inter, items, cfg, src, how)
    if src == "synthetic":
        from genrec.data.synthetic import make_synthetic

        inter, items = make_synthetic(cfg.n_users, cfg.n_items, cfg.seq_len, cfg.synthetic_seed)
        return build_recdata(inter, items, cfg, "synthetic", f"synthetic(seed={cfg.synthetic_seed})")
    if src == "amazon":
        from genrec.data.amazon import load_amazon

        inter, items = load_amazon(cfg.path, cfg.item_path)
        return build_recdata(inter, items, cfg, dataset_name(cfg), cfg.path, where=cfg.path)
    from genrec.data.tables import load_table_source

    inter, items = load_table_source(cfg)
    return build_recdata(inter, items, cfg, dataset_name(cfg), cfg.path, where=cfg.path)


def dataset_name(cfg) -> str:
    """`data.name` for the user's own data (csv/parquet/jsonl/amazon), else the source."""
    name = getattr(cfg, "name", "") or cfg.source
    if not re.fullmatch(r"[\w.+-]+", name):
        raise ConfigError(f"data.name: {name!r} must be letters, digits and . _ + - only")
    return name
