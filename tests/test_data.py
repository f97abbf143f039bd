"""Data sources, preprocessing, splits and clear errors for bad input."""
import gzip
import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from genrec.config import load_config
from genrec.data import load_data, split_data
from genrec.data.movielens import parse_grouplens_zip
from genrec.errors import DataError


def _cfg(**kw):
    return load_config([], [f"data.{k}={v}" for k, v in kw.items()])


def _write(tmp_path, text, name="inter.csv"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


GOOD = "user_id,item_id,timestamp\n" + "".join(
    f"u{u},i{(u + j) % 7},{100 + j}\n" for u in range(5) for j in range(5))


def test_csv_source_and_loo_split(tmp_path):
    cfg = _cfg(source="csv", path=_write(tmp_path, GOOD))
    data = load_data(cfg.data)
    assert (data.n_users, data.n_items, data.n_interactions) == (5, 7, 25)
    split = split_data(data, cfg.data)
    for u, seq in enumerate(data.sequences):
        assert split.test.targets[u] == seq[-1] and split.valid.targets[u] == seq[-2]
        assert list(split.test.histories[u]) == list(seq[:-1])
        assert list(split.train[u]) == list(seq[:-2])


def test_ties_keep_file_order_and_split_is_reproducible(tmp_path):
    # every row of a user shares one timestamp: the order must be file order
    text = "user_id,item_id,timestamp\n" + "".join(f"a,i{k},5\n" for k in [3, 1, 2, 0])
    cfg = _cfg(source="csv", path=_write(tmp_path, text))
    data = load_data(cfg.data)
    assert [data.item_ids[i] for i in data.sequences[0]] == ["i3", "i1", "i2", "i0"]
    f1 = split_data(data, cfg.data).fingerprint()
    f2 = split_data(load_data(cfg.data), cfg.data).fingerprint()
    assert f1 == f2


@pytest.mark.parametrize("text,needle", [
    ("user_id,item_id\nu,i\n", "missing column 'timestamp'"),
    ("user_id,item_id,timestamp\nu,i,yesterday-ish\n", "non-numeric"),
    ("", "empty"),
])
def test_bad_files(tmp_path, text, needle):
    cfg = _cfg(source="csv", path=_write(tmp_path, text))
    with pytest.raises(DataError, match=needle):
        load_data(cfg.data)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_data(_cfg(source="csv", path=str(tmp_path / "nope.csv")).data)


def test_short_users_and_duplicates_are_counted(tmp_path):
    text = GOOD + "short,i1,1\nshort,i2,2\n" + "u0,i0,100\n"  # a 2-item user and a duplicate row
    data = load_data(_cfg(source="csv", path=_write(tmp_path, text)).data)
    assert data.stats["dropped_short_users"] == 1
    assert data.stats["dropped_duplicates"] == 1
    assert "short" not in set(data.user_ids)


def test_nothing_left_is_an_error(tmp_path):
    text = "user_id,item_id,timestamp\nu,i,1\nu,j,2\n"
    with pytest.raises(DataError, match="no interactions left"):
        load_data(_cfg(source="csv", path=_write(tmp_path, text)).data)


def test_datetime_timestamps_and_item_text(tmp_path):
    inter = "user,item,when\n" + "".join(f"u{u},i{j},2020-01-0{j + 1}\n" for u in range(3) for j in range(4))
    items = "item,title,year\n" + "".join(f"i{j},Title {j},19{90 + j}\n" for j in range(3))  # i3 missing
    cfg = load_config([], ["data.source=csv", f"data.path={_write(tmp_path, inter)}", "data.user_col=user",
                           "data.item_col=item", "data.time_col=when",
                           f"data.item_path={_write(tmp_path, items, 'items.csv')}",
                           "data.text_template={title} ({year})"])
    data = load_data(cfg.data)
    assert data.item_text[:3] == ["Title 0 (1990)", "Title 1 (1991)", "Title 2 (1992)"]
    assert data.item_text[3] == "i3" and data.stats["items_without_metadata"] == 1
    bad = load_config([], [f"data.{k}" for k in ("source=csv", f"path={cfg.data.path}", "user_col=user",
                                                  "item_col=item", "time_col=when")] +
                      [f"data.item_path={cfg.data.item_path}", "data.text_template={plot}"])
    with pytest.raises(DataError, match="plot"):
        load_data(bad.data)


def test_jsonl_and_parquet(tmp_path):
    df = pd.DataFrame({"user_id": [f"u{i // 4}" for i in range(12)], "item_id": [f"i{i % 5}" for i in range(12)],
                       "timestamp": list(range(12))})
    p = tmp_path / "x.jsonl"
    df.to_json(p, orient="records", lines=True)
    assert load_data(_cfg(source="jsonl", path=str(p)).data).n_interactions == 12
    try:
        q = tmp_path / "x.parquet"
        df.to_parquet(q)
    except ImportError:
        pytest.skip("no parquet engine")
    assert load_data(_cfg(source="parquet", path=str(q)).data).n_interactions == 12


def test_kcore_fraction_and_temporal_split():
    cfg = load_config([], ["data.source=synthetic", "data.kcore=5"])
    data = load_data(cfg.data)
    assert min(len(s) for s in data.sequences) >= 5
    counts = np.bincount(np.concatenate(data.sequences))
    assert counts[counts > 0].min() >= 5
    half = load_data(load_config([], ["data.source=synthetic", "data.data_fraction=0.5"]).data)
    assert abs(half.n_users - 150) <= 1
    cfg = load_config([], ["data.source=synthetic", "data.split=temporal"])
    data = load_data(cfg.data)
    sp = split_data(data, cfg.data)
    assert sp.protocol == "temporal" and len(sp.test) > 0
    for u, h in zip(sp.test.users, sp.test.histories):
        assert len(h) > 0 and len(sp.train[u]) <= len(h)


def test_bad_fraction():
    with pytest.raises(DataError, match="data_fraction"):
        load_data(load_config([], ["data.source=synthetic", "data.data_fraction=1.5"]).data)


def test_grouplens_archive_parsers():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-100k/u.data", "1\t10\t4\t100\n1\t20\t5\t101\n")
        z.writestr("ml-100k/u.item", "10|Heat (1995)|01-Jan-1995||url|0|1" + "|0" * 17 + "\n"
                   "20|Fargo (1996)|01-Jan-1996||url|0|0|0|0|0|1" + "|0" * 13 + "\n")
    inter, items = parse_grouplens_zip("ml-100k", buf.getvalue())
    assert list(inter["item"]) == ["10", "20"]
    assert items.loc[0, "title"] == "Heat" and items.loc[0, "year"] == "1995" and items.loc[0, "genres"] == "Action"
    assert items.loc[1, "genres"] == "Comedy"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ml-1m/ratings.dat", "1::7::5::978300760\n")
        z.writestr("ml-1m/movies.dat", "7::Sabrina (1995)::Comedy|Romance\n")
    inter, items = parse_grouplens_zip("ml-1m", buf.getvalue())
    assert inter.loc[0, "user"] == "1m_1" and inter.loc[0, "item"] == "Sabrina (1995)"
    assert items.loc[0, "genres"] == "Comedy, Romance"


def test_amazon_2014_and_2023(tmp_path):
    rev = tmp_path / "reviews.json.gz"
    with gzip.open(rev, "wt") as f:
        for u in range(3):
            for j in range(4):
                f.write(json.dumps({"reviewerID": f"U{u}", "asin": f"A{j}", "unixReviewTime": 10 * j + u,
                                    "overall": 5.0}) + "\n")
    meta = tmp_path / "meta.json"
    meta.write_text("".join(str({"asin": f"A{j}", "title": f"Thing {j}", "categories": [["Beauty", "Skin"]]}) + "\n"
                            for j in range(4)))
    cfg = load_config([], ["data.source=amazon", f"data.path={rev}", f"data.item_path={meta}",
                           "data.text_template={title} | {categories}"])
    data = load_data(cfg.data)
    assert data.n_interactions == 12 and data.item_text[0] == "Thing 0 | Beauty, Skin"
    rev23 = tmp_path / "r23.jsonl"
    rev23.write_text("".join(json.dumps({"user_id": f"U{u}", "parent_asin": f"P{j}", "timestamp": 1000 * j,
                                         "rating": 4}) + "\n" for u in range(3) for j in range(3)))
    data = load_data(load_config([], ["data.source=amazon", f"data.path={rev23}"]).data)
    assert data.n_interactions == 9
    (tmp_path / "bad.jsonl").write_text('{"foo": 1}\n')
    with pytest.raises(DataError, match="not an Amazon reviews file"):
        load_data(load_config([], ["data.source=amazon", f"data.path={tmp_path / 'bad.jsonl'}"]).data)


def test_genrec_data_by_name_prints_the_fingerprint_runs_record(tmp_path, monkeypatch, capsys):
    import genrec.cli as cli

    shipped = tmp_path / "synthetic.yaml"  # stands in for configs/data/synthetic.yaml
    shipped.write_text("data:\n  source: synthetic\n  n_users: 60\n  n_items: 40\n  seq_len: 8\n")
    monkeypatch.setattr(cli, "DATA_CONFIGS", tmp_path)
    run_data = load_data(load_config([str(shipped)]).data)  # what a run with that data file loads
    default = load_data(load_config([], ["data.source=synthetic"]).data)
    assert run_data.fingerprint() != default.fingerprint()
    assert cli.main(["data", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert f"data fingerprint {run_data.fingerprint()}" in out and str(shipped) in out
    other = tmp_path / "other.yaml"  # an explicit -c wins over the shipped settings
    other.write_text("data:\n  n_users: 70\n  n_items: 30\n")
    assert cli.main(["data", "synthetic", "-c", str(other)]) == 0
    expect = load_data(load_config([str(other)], ["data.source=synthetic"]).data).fingerprint()
    assert f"data fingerprint {expect}" in capsys.readouterr().out
    assert cli.main(["data", "movielens"]) == 2  # an unknown name: one line naming it and the known ones
    err = capsys.readouterr().err
    assert "unknown data set 'movielens'" in err and "ml-1m" in err and "Traceback" not in err
