"""benchmarks/speed.py: the quick run yields every section, and genrec's constrained beam search returns the
same top-K lists (and scores) as HuggingFace generate(prefix_allowed_tokens_fn) on tiny models.
Correctness only: no speed is asserted."""
from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _bench(tmp_path):
    common = _load("speed_common")
    return common.Bench(torch.device("cpu"), quick=True, repeats=1, warmup=0, workdir=tmp_path)


@pytest.mark.slow
def test_quick_run_has_every_section(tmp_path):
    speed = _load("speed")
    out = tmp_path / "speed.csv"
    rows = speed.main(["--quick", "--device", "cpu", "--out", str(out), "--profile"])
    assert {r.section for r in rows} == set(speed.SECTIONS)
    prof = (tmp_path / "profile_train_cpu.txt").read_text()  # both training cases, ours and the reference
    assert prof.count("-- ours (genrec train_loop)") == 2 and prof.count("-- reference (HF T5") == 2
    assert "matmul" in prof
    assert not [r for r in rows if "FAILED" in r.note], [r.note for r in rows if "FAILED" in r.note]
    with open(out) as f:
        table = list(csv.DictReader(f))
    assert list(table[0].keys()) == speed.COLUMNS and len(table) == len(rows)
    assert all(r["device"].startswith("cpu") for r in table)
    timed = [r for r in rows if r.unit in ("users/s", "seq/s", "s/epoch", "texts/s")]
    assert timed and all(r.ours is not None and r.ours > 0 for r in timed)
    sid = [r for r in rows if r.case.startswith("sid-t5 beam") and r.case.endswith("agreement")]
    assert sid and all(r.ours == 1.0 for r in sid)  # identical top-K lists for every user
    ratio = [r for r in rows if r.ours and r.reference and r.unit == "users/s"][0]
    assert ratio.ratio == pytest.approx(ratio.ours / ratio.reference, rel=1e-2)
    with pytest.raises(SystemExit):
        speed.main(["--quick", "--only", "nope"])


@pytest.mark.parametrize("n_items,K", [(60, 5), (12, 20)])  # 12 items < 20 beams: both leave empty slots
def test_sid_beam_search_equals_hf_generate(tmp_path, n_items, K):
    dec = _load("speed_decode")
    size = dict(num_layers=1, num_decoder_layers=1, d_model=32, num_heads=2, d_kv=16, d_ff=64)
    model = dec.sid_model(_bench(tmp_path), n_items, 2, 8, size, max_history=4)
    hist = torch.randint(0, n_items, (5, 4), generator=torch.Generator().manual_seed(1))
    (oi, os_), (ri, rs), _ = dec.compare_sid(model, torch.arange(5), hist, K)
    assert torch.equal(oi, ri)
    assert torch.allclose(os_, rs, atol=1e-4)
    assert ((oi >= 0).sum(1) == min(K, n_items)).all()
    assert dec.agreement((oi, os_), (ri, rs))["identical"] == 1.0


def test_llm_beam_search_equals_hf_generate_same_length_titles(tmp_path):
    """Titles of equal token length finish together, where genrec's search and HF's coincide exactly."""
    dec = _load("speed_decode")
    colours, kinds = ["red", "green", "blue", "amber"], ["lamp", "kettle", "tent", "novel", "camera"]
    titles = [f"{c} {k} {i}" for i, (c, k) in enumerate((c, k) for c in colours for k in kinds)]
    rec, codec, tok, _ = dec.llm_setup(_bench(tmp_path), titles, len(titles), lora_rank=4, history_items=3)
    assert len(set(codec.tgt_len[:-1].tolist())) == 1
    histories = [np.array([0, 5, 7]), np.array([3]), np.array([12, 19])]
    (oi, os_), (ri, rs), _ = dec.compare_llm(rec, codec, tok, histories, 6)
    assert torch.equal(oi, ri)
    assert torch.allclose(os_, rs, atol=1e-4)


def test_llm_beam_search_equals_hf_generate_mixed_length_titles(tmp_path):
    """Titles that finish at different steps: both searches keep K running beams plus K finished titles."""
    dec = _load("speed_decode")
    words = ["red", "green lamp", "blue kettle of tea", "amber tent", "novel", "old camera case", "a b c d e"]
    titles = [f"{w} {i}" for i in range(4) for w in words]
    rec, codec, tok, _ = dec.llm_setup(_bench(tmp_path), titles, len(titles), lora_rank=4, history_items=3)
    assert len(set(codec.tgt_len[:-1].tolist())) > 2
    histories = [np.array([0, 5, 7]), np.array([3]), np.array([12, 19]), np.array([1, 2, 3])]
    for K in (3, 8):
        (oi, os_), (ri, rs), _ = dec.compare_llm(rec, codec, tok, histories, K)
        assert torch.equal(oi, ri)
        assert torch.allclose(os_, rs, atol=1e-4)


def test_helpers(tmp_path):
    dec = _load("speed_decode")
    table = dec.prefix_table([[5, 6, 1], [5, 7, 1], [8, 1]])
    assert table[()] == [5, 8] and table[(5,)] == [6, 7] and table[(5, 6)] == [1]
    fn = dec.prefix_fn(table, 2, fallback=0)
    assert fn(0, torch.tensor([9, 9, 5])) == [6, 7] and fn(0, torch.tensor([9, 9, 3])) == [0]
    a = dec.agreement((torch.tensor([[1, 2, 3]]), torch.tensor([[-1.0, -2.0, -3.0]])),
                      (torch.tensor([[1, 3, 4]]), torch.tensor([[-1.0, -3.0, -3.5]])))
    assert a["identical"] == 0.0 and a["overlap"] == pytest.approx(2 / 3) and a["max_score_gap"] == 0.0
    common = _load("speed_common")
    b = _bench(tmp_path)
    r = b.add("s", "c", 2.0, 4.0, "s")  # lower is better: ratio = reference / ours
    assert r.ratio == 2.0 and b.add("s", "c", 2.0, 4.0, "users/s").ratio == 0.5
    assert common._round(123456.789) == 123457.0 and common._round(0.000123456) == 0.0001235
