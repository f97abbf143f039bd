"""Bad input and damaged files: a one-line error (CLI exit 2) or, when asked, a counted drop (issue 16)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from genrec.cli import main as cli
from genrec.config import load_config
from genrec.data import load_data, split_data
from genrec.errors import ConfigError, DataError

ROWS = [(f"u{u}", f"i{(u + j) % 7}", 100 + 10 * j) for u in range(4) for j in range(5)]


def _csv(tmp_path, rows, tail="", name="inter.csv", header="user_id,item_id,timestamp"):
    p = tmp_path / name
    p.write_text(header + "\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows) + tail)
    return p


def _jsonl(tmp_path, records, name="inter.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in records))
    return p


def _run(capsys, *sets):
    rc = cli(["data", *[x for s in sets for x in ("--set", s)]])
    out = capsys.readouterr()
    return rc, out.err.strip()


def _split_fp(*sets):
    cfg = load_config([], list(sets))
    data = load_data(cfg.data)
    return data, split_data(data, cfg.data).fingerprint()


def test_null_jsonl_timestamp_is_an_error_or_a_counted_drop(tmp_path, capsys, caplog):
    recs = [{"user_id": u, "item_id": i, "timestamp": t} for u, i, t in ROWS]
    bad = _jsonl(tmp_path, recs[:7] + [{"user_id": "u1", "item_id": "i5", "timestamp": None}] + recs[7:], "bad.jsonl")
    rc, err = _run(capsys, "data.source=jsonl", f"data.path={bad}")
    assert rc == 2 and len(err.splitlines()) == 1
    assert str(bad) in err and "line 8" in err and "timestamp is empty" in err and "None" in err
    with caplog.at_level(logging.WARNING, "genrec"):
        data, fp = _split_fp("data.source=jsonl", f"data.path={bad}", "data.bad_rows=drop")
    assert data.stats["dropped_bad_rows"] == 1 and "dropped 1 bad rows" in caplog.text
    assert data.stats["time_unit"] == "seconds" and data.timestamps[0].max() < 1e4  # not nanoseconds
    good = _jsonl(tmp_path, recs, "good.jsonl")
    assert fp == _split_fp("data.source=jsonl", f"data.path={good}")[1]


def test_truncated_or_short_last_csv_line(tmp_path, capsys):
    cut = _csv(tmp_path, ROWS, tail="u3,i2,1", name="cut.csv")  # '1' of a cut-off '140', no line end
    rc, err = _run(capsys, "data.source=csv", f"data.path={cut}")
    assert rc == 2 and "looks cut off" in err and "'u3,i2,1'" in err and str(cut) in err
    short = _csv(tmp_path, ROWS, tail="u3,i2\n", name="short.csv")
    rc, err = _run(capsys, "data.source=csv", f"data.path={short}")
    assert rc == 2 and "has 2 of 3 fields" in err
    data, fp = _split_fp("data.source=csv", f"data.path={cut}", "data.bad_rows=drop")
    assert data.stats["dropped_bad_rows"] == 1
    assert fp == _split_fp("data.source=csv", f"data.path={_csv(tmp_path, ROWS)}")[1]


@pytest.mark.parametrize("value,needle", [("-5", "before 1970"), ("9000000000", "after 2100"),
                                          ("inf", "not a finite number"), ("nan", "is not a number")])
def test_negative_far_future_and_nan_times(tmp_path, capsys, value, needle):
    p = _csv(tmp_path, ROWS + [("u0", "i6", value)])
    rc, err = _run(capsys, "data.source=csv", f"data.path={p}")
    assert rc == 2 and needle in err and "row 21" in err and repr(value) in err


def test_bad_date_names_the_bad_value(tmp_path, capsys):
    rows = [(u, i, f"2020-01-{10 + k % 20:02d}") for k, (u, i, _) in enumerate(ROWS)]
    rows[5] = (rows[5][0], rows[5][1], "2020-13-45")
    rc, err = _run(capsys, "data.source=csv", f"data.path={_csv(tmp_path, rows)}")
    assert rc == 2 and "row 6" in err and "'2020-13-45'" in err and "2020-01-10" not in err


def test_time_unit_is_decided_for_the_whole_column(tmp_path):
    sec, fp_sec = _split_fp("data.source=csv", f"data.path={_csv(tmp_path, ROWS, name='s.csv')}")
    ms_rows = [(u, i, 1_600_000_000_000 + 1000 * t) for u, i, t in ROWS]
    ms, fp_ms = _split_fp("data.source=csv", f"data.path={_csv(tmp_path, ms_rows, name='ms.csv')}")
    assert ms.stats["time_unit"] == "milliseconds" and fp_ms == fp_sec
    assert ms.timestamps[0][0] == pytest.approx(1_600_000_000 + 100)


def test_no_time_column_uses_file_order(tmp_path, capsys):
    p = tmp_path / "noclock.csv"
    p.write_text("user_id,item_id\n" + "".join(f"u{k % 3},i{(7 * k) % 5}\n" for k in range(12)))
    rc, err = _run(capsys, "data.source=csv", f"data.path={p}", "data.time_col=")
    assert rc == 2 and "data.time_col is empty" in err and "data.order=file" in err
    yml = tmp_path / "noclock.yaml"
    yml.write_text(f"data:\n  source: csv\n  path: {p}\n  time_col: null\n  order: file\n")
    data = load_data(load_config([str(yml)]).data)
    assert [data.item_ids[i] for i in data.sequences[0]] == [f"i{(7 * k) % 5}" for k in range(0, 12, 3)]


def test_item_with_two_titles_is_counted(tmp_path, caplog):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"i{k},T{k}\n" for k in range(7)) + "i3,Another title\n")
    with caplog.at_level(logging.WARNING, "genrec"):
        data, _ = _split_fp("data.source=csv", f"data.path={_csv(tmp_path, ROWS)}", f"data.item_path={items}")
    assert data.stats["items_with_conflicting_rows"] == 1 and "1 item ids have two or more" in caplog.text
    assert data.item_text[3] == "T3"


def test_ids_written_differently_are_named(tmp_path, capsys, caplog):
    rows = [(u, f"{1430 + int(i[1:])}.0", t) for u, i, t in ROWS]
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"{1430 + k},Film {k}\n" for k in range(7)))
    sets = ("data.source=csv", f"data.path={_csv(tmp_path, rows)}", f"data.item_path={items}")
    rc, err = _run(capsys, *sets)
    assert rc == 2 and "7 of 7 items" in err and "written differently" in err and "'1430.0'" in err
    assert "data.min_text_share" in err
    with caplog.at_level(logging.WARNING, "genrec"):
        data, _ = _split_fp(*sets, "data.min_text_share=0")
    assert data.stats["items_with_respelled_ids"] == 7 and "written differently" in caplog.text


def test_all_empty_texts_are_an_error(tmp_path, capsys):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"i{k},\n" for k in range(7)))
    rc, err = _run(capsys, "data.source=csv", f"data.path={_csv(tmp_path, ROWS)}", f"data.item_path={items}")
    assert rc == 2 and "7 of 7 items have an empty text" in err and "only 0 of 7 items" in err


def test_delimiter_and_encoding(tmp_path, capsys):
    p = tmp_path / "semi.csv"
    p.write_bytes(("user_id;item_id;timestamp\n" + "".join(f"{u};{i};{t}\n" for u, i, t in ROWS)).encode())
    items = tmp_path / "items.csv"
    items.write_bytes(("item_id;title\n" + "".join(f"i{k};Café {k}\n" for k in range(7))).encode("latin-1"))
    rc, err = _run(capsys, "data.source=csv", f"data.path={p}")
    assert rc == 2 and "set data.delimiter" in err
    sets = ["data.source=csv", f"data.path={p}", f"data.item_path={items}", "data.delimiter=;"]
    rc, err = _run(capsys, *sets)
    assert rc == 2 and "not valid utf-8" in err and "data.encoding" in err
    data = load_data(load_config([], sets + ["data.encoding=latin-1"]).data)
    assert data.item_text[0] == "Café 0" and data.n_interactions == len(ROWS)


def test_yaml_syntax_error_names_the_line(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("data:\n  source: csv\n  path: [unclosed\n  kcore: 2\n")
    rc = cli(["data", "-c", str(p)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and f"{p}:4:" in err and "not valid YAML" in err


def test_custom_dataset_name(tmp_path):
    data, _ = _split_fp("data.source=csv", f"data.path={_csv(tmp_path, ROWS)}", "data.name=shop-2024")
    assert data.name == "shop-2024"
    with pytest.raises(ConfigError, match="data.name"):
        _split_fp("data.source=csv", f"data.path={_csv(tmp_path, ROWS)}", "data.name=a b")


def _fake_encoder(monkeypatch, dims=8):
    import genrec.encoders.cache as cache
    import genrec.encoders.text as text
    from genrec.encoders.resolve import ResolvedModel

    calls = []

    class FakeEncoder:
        def __init__(self, *a, **k):
            pass

        def encode_raw(self, texts):
            calls.append(len(texts))
            return np.random.default_rng(len(texts)).normal(size=(len(texts), dims)).astype(np.float32)

    resolved = ResolvedModel("sentence-transformers", Path("/nonexistent"), "fake/model", "rev1", "test")
    monkeypatch.setattr(cache, "resolve_model", lambda *a, **k: resolved)
    monkeypatch.setattr(text, "TextEncoder", FakeEncoder)
    return calls


def test_embedding_cache_with_wrong_width_is_not_a_hit(monkeypatch, caplog, synthetic):
    from genrec.encoders import encode_items

    cfg, data, _ = synthetic
    calls = _fake_encoder(monkeypatch)
    emb, info = encode_items(data, cfg.encoder, return_info=True, progress=False)
    assert info["cache"] == "miss" and emb.shape == (data.n_items, 8)
    np.save(info["file"], np.zeros((data.n_items, 3), dtype=np.float32))  # a damaged entry
    with caplog.at_level(logging.WARNING, "genrec"):
        emb2, info2 = encode_items(data, cfg.encoder, return_info=True, progress=False)
    assert info2["cache"] == "miss" and emb2.shape == (data.n_items, 8) and len(calls) == 2
    assert "shape (120, 3), expected (120, 8)" in caplog.text and "recomputing" in caplog.text
    assert encode_items(data, cfg.encoder, return_info=True, progress=False)[1]["cache"] == "hit"


def test_damaged_tokenizer_folder(tmp_path, caplog):
    from genrec.config import from_dict
    from genrec.sid.config import SIDConfig
    from genrec.sid.tokenizer import SIDTokenizer, get_tokenizer

    emb = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    sid = from_dict(SIDConfig, {"quantizer": "rq_kmeans", "levels": 2, "codebook_size": 4, "kmeans_iters": 5})
    tok = get_tokenizer(emb, sid, 0, progress=False)
    folder = next(p for p in Path(tok_root()).iterdir() if p.name.startswith("rq_kmeans"))
    codes = folder / "codes.safetensors"
    codes.write_bytes(codes.read_bytes()[:40])  # truncated
    with pytest.raises(DataError, match="codes.safetensors: unreadable") as e:
        SIDTokenizer.from_pretrained(folder)
    assert len(str(e.value).splitlines()) == 1 and "train it again" in str(e.value)
    with caplog.at_level(logging.WARNING, "genrec"):
        again = get_tokenizer(emb, sid, 0, progress=False)
    assert "is damaged" in caplog.text and np.array_equal(again.codes, tok.codes)
    assert np.array_equal(SIDTokenizer.from_pretrained(folder).codes, tok.codes)  # the cache is whole again


def tok_root() -> Path:
    from genrec.paths import cache_dir

    return cache_dir("tokenizers")


def test_tokenize_save_never_deletes_a_foreign_folder(tmp_path, capsys):
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    rc = cli(["tokenize", "--set", "data.source=synthetic", "--save", str(dest)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "not a genrec tokenizer folder" in err and "--overwrite" in err
    assert (dest / "notes.txt").read_text() == "keep me"


def test_leaderboard_ignores_a_torn_last_row(tmp_path, caplog):
    from genrec.scaling.leaderboard import done_run_ids, read_rows

    p = tmp_path / "lb.csv"
    whole = "run_id,status,point,extra\nr1,ok,a,{}\nr2,failed,b,{}\n"
    for torn, why in (("r3,ok,c,{", "no line end"), ("r3,ok\n", "2 fields"), ("r3,o,c,{}\n", "status 'o'")):
        p.write_text(whole + torn)
        caplog.clear()
        with caplog.at_level(logging.WARNING, "genrec"):
            rows = read_rows(p)
        assert [r["run_id"] for r in rows] == ["r1", "r2"] and why in caplog.text and "torn last row" in caplog.text
        assert done_run_ids(p) == {"r1"}
    p.write_text(whole)
    assert len(read_rows(p)) == 2


def test_zero_epochs_is_a_config_error():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "genrec.cli", "run", "--set", "data.source=synthetic",
                        "--set", "train.epochs=0"], capture_output=True, text=True)
    assert r.returncode == 2 and "train.epochs must be >= 1, got 0" in r.stderr and "Traceback" not in r.stderr
