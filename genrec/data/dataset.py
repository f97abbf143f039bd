"""From raw frames to a preprocessed `RecData` and a reproducible `Split`.

Order of operations (each drop is counted in `RecData.stats` and logged):
dedup exact rows -> min_rating -> k-core -> data_fraction (users) -> users with too few interactions
-> index users/items (sorted raw ids) -> per-user chronological order, ties kept in file order.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from genrec.errors import DataError

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


@dataclass
class Split:
    protocol: str
    train: list[np.ndarray]  # per-user training sequences (may be empty)
    valid: EvalSet
    test: EvalSet

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


def _numeric_time(col: pd.Series, where: str) -> np.ndarray:
    num = pd.to_numeric(col, errors="coerce")
    if num.notna().all():
        return num.to_numpy(dtype=np.float64)
    try:
        dt = pd.to_datetime(col, errors="raise", utc=True)
        return (dt - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    except (ValueError, TypeError):
        bad = col[num.isna()].iloc[0]
        raise DataError(f"{where}: timestamp column has a non-numeric, non-date value {bad!r}") from None


def _kcore(df: pd.DataFrame, k: int) -> pd.DataFrame:
    while True:
        uc = df["user"].map(df["user"].value_counts())
        ic = df["item"].map(df["item"].value_counts())
        keep = (uc >= k) & (ic >= k)
        if keep.all():
            return df
        df = df[keep]


def item_texts(items: pd.DataFrame | None, item_ids: np.ndarray, template: str,
               title_template: str = "{title}") -> tuple[list[str], list[str], int]:
    """Render the text and title templates per item; items missing from the metadata fall back to their id."""
    if items is None:
        ids = [str(i) for i in item_ids]
        return ids, ids, len(ids)
    meta = items.drop_duplicates("item").set_index("item")
    missing = 0
    texts, titles = [], []
    for iid in item_ids:
        if iid in meta.index:
            row = {k: ("" if pd.isna(v) else str(v)) for k, v in meta.loc[iid].items()}
            row["item_id"] = str(iid)
            row.setdefault("title", str(iid))
            try:
                texts.append(template.format(**row).strip())
                titles.append(title_template.format(**row).strip() or str(iid))
            except KeyError as e:
                raise DataError(f"data.text_template / title_template use {{{e.args[0]}}}, which is not an "
                                f"item column (columns: {', '.join(map(str, meta.columns))})") from None
        else:
            missing += 1
            texts.append(str(iid))
            titles.append(str(iid))
    return texts, titles, missing


def build_recdata(inter: pd.DataFrame, items: pd.DataFrame | None, cfg, name: str, source: str,
                  where: str = "") -> RecData:
    where = where or name
    if len(inter) == 0:
        raise DataError(f"{where}: no interactions")
    stats: dict = {"rows_read": int(len(inter))}
    df = inter.copy()
    df["user"] = df["user"].astype(str)
    df["item"] = df["item"].astype(str)
    if (df["user"] == "").any() or (df["item"] == "").any():
        n = int(((df["user"] == "") | (df["item"] == "")).sum())
        stats["dropped_empty_ids"] = n
        df = df[(df["user"] != "") & (df["item"] != "")]
    df["ts"] = _numeric_time(df["timestamp"], where)
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
        return build_recdata(inter, items, cfg, "amazon", cfg.path, where=cfg.path)
    from genrec.data.tables import load_table_source

    inter, items = load_table_source(cfg)
    return build_recdata(inter, items, cfg, src, cfg.path, where=cfg.path)
