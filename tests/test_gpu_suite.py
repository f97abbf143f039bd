"""benchmarks/gpu_prepare.py + gpu_suite.py on the CPU: a tiny pack made here (synthetic data, a tiny SID
tokenizer), the packed-data reader, and the suite within a 60 s budget (quick sizes): it runs, writes each
piece and its notes, skips with a note what does not fit, and exits 0."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # conftest.py


def _prepare_module():
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import gpu_prepare

    return gpu_prepare


@pytest.fixture
def tiny_pack(tmp_path):
    from genrec.config import load_config
    from genrec.data import load_data
    from genrec.sid.config import SIDConfig
    from genrec.sid.tokenizer import train_tokenizer

    n = load_data(load_config([], ["data.source=synthetic"]).data).n_items
    emb = np.random.default_rng(0).standard_normal((n, 16)).astype(np.float32)
    tok = train_tokenizer(emb, SIDConfig(quantizer="rqvae", levels=2, codebook_size=8, latent_dim=4, hidden_dims=[16],
                                         epochs=2, batch_size=64), 0, progress=False)
    tok.save_pretrained(tmp_path / "tok")
    manifest = _prepare_module().prepare(tmp_path / "pack", [], ["data.source=synthetic"], tmp_path / "tok",
                                         terms="synthetic test data")
    return tmp_path / "pack", manifest


def test_pack_round_trip(tiny_pack):
    from genrec.config import load_config
    from genrec.data import load_data, split_data
    from genrec.errors import DataError

    pack, m = tiny_pack
    assert m["embeddings"] is None and m["size_mb"] < 1 and (pack / "README.md").is_file()
    orig = load_config([], ["data.source=synthetic"])
    real = load_data(orig.data)
    cfg = load_config([], ["data.source=synthetic", f"data.path={pack / m['data_file']}"])
    data = load_data(cfg.data)
    assert data.source.startswith("packed:") and data.n_items == real.n_items
    assert all(np.array_equal(a, b) for a, b in zip(data.sequences, real.sequences))
    assert split_data(data, cfg.data).fingerprint() == split_data(real, orig.data).fingerprint() == \
        m["split_fingerprint"]
    for bad in (["data.data_fraction=0.5"], ["data.source=ml-1m"]):
        with pytest.raises(DataError):
            load_data(load_config([], ["data.source=synthetic", f"data.path={pack / m['data_file']}", *bad]).data)
    with np.load(pack / m["data_file"]) as z:  # an edited pack fails its split fingerprint
        arrays = dict(z)
    arrays["items"] = arrays["items"][::-1].copy()
    np.savez(pack / "edited.npz", **arrays)
    with pytest.raises(DataError, match="split fingerprint"):
        load_data(load_config([], ["data.source=synthetic", f"data.path={pack / 'edited.npz'}"]).data)


def _suite(tmp_path, pack: Path, budget: float, *extra: str) -> tuple[dict, float]:
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(BENCH / "gpu_suite.py"), "--budget-s", str(budget), "--device", "cpu",
                           "--pack", str(pack), "--out", str(out), "--work", str(tmp_path / "work"), *extra],
                          capture_output=True, text=True, timeout=budget + 90, cwd=REPO)
    wall = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    state = json.loads((out / "suite.json").read_text())
    assert (out / "notes.md").read_text().startswith("# GPU suite: cpu")
    return state, wall


def test_suite_skips_what_does_not_fit(tmp_path, tiny_pack):
    state, wall = _suite(tmp_path, tiny_pack[0], 4, "--skip", "speed")
    pieces = {p["piece"]: p for p in state["pieces"]}
    for name in ("recsize", "tiger", "sasrec", "cfdim"):
        assert pieces[name]["status"] in ("nothing finished", "skipped"), pieces[name]
        assert "skipped" in pieces[name]["note"] and "left" in pieces[name]["note"]
    assert pieces["done"]["status"] == "ok" and "speed decode" not in pieces


def test_suite_runs_within_budget(tmp_path, tiny_pack):
    budget = 120  # the suite stops when everything is done (~40 s on an idle 2-core CPU); room for a busy one
    state, wall = _suite(tmp_path, tiny_pack[0], budget)
    out = tmp_path / "out"
    assert state["elapsed_s"] <= budget + 5 and wall < budget + 30  # + interpreter start and the last note
    pieces = {p["piece"]: p for p in state["pieces"]}
    assert state["sizes"] == "quick" and pieces["environment"]["status"] == "ok"
    assert set(state["packages"]) >= {"torch", "transformers", "peft", "accelerate", "sentence-transformers"}
    for p in state["pieces"]:
        assert p["status"] in ("ok", "partial", "skipped", "stopped at the budget", "nothing finished"), p
        assert p["status"] == "ok" or p["note"], p
        assert all((out / f).is_file() for f in p["files"])
    speed = [p for n, p in pieces.items() if n.startswith("speed ")]
    assert len(speed) == 4 and pieces["speed decode"]["status"] == "ok"
    with open(out / "speed_decode.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["precision"] for r in rows)
    finished = [n for n in ("recsize", "tiger", "sasrec", "cfdim") if pieces[n]["status"] in ("ok", "partial")]
    assert finished, state["pieces"]  # at least one training piece fits at quick sizes
    for name in finished:
        with open(out / f"{name}.csv") as f:
            rows = [r for r in csv.DictReader(f) if r["status"] == "ok"]
        assert rows and all(float(r["train_tokens"] or 0) >= 0 for r in rows)
        assert (name != "sasrec") or float(rows[0]["train_flops"]) > 0


def test_cfdim_piece_runs_and_a_second_suite_continues_it(tmp_path, tiny_pack):
    """Two processes share the piece's point list (as six do on a GPU): every run trains once."""
    skip = ["--skip", "speed,recsize,tiger,sasrec", "--cf-procs", "2"]
    state, _ = _suite(tmp_path, tiny_pack[0], 90, *skip)
    piece = {p["piece"]: p for p in state["pieces"]}["cfdim"]
    assert piece["status"] in ("ok", "partial") and "2 process(es)" in piece["note"], piece
    with open(tmp_path / "out" / "cfdim.csv") as f:
        rows = list(csv.DictReader(f))
    tuned = [r for r in rows if r["sweep"] == "cf_dim_ml1m_gpu" and r["status"] == "ok"]
    tuning = [r for r in rows if r["sweep"] == "cf_dim_ml1m_gpu/tune"]
    assert len(tuning) == 4 and len(tuned) == 3  # the grid on validation, then the 3 seeds of d=4
    assert len({r["run_id"] for r in rows}) == len(rows) == 7  # no run twice, though both processes saw all
    logs = [(tmp_path / "out" / "logs" / f"cfdim-{i}.log").read_text() for i in range(2)]
    trained = [line.split(":")[0] for log in logs for line in log.splitlines() if "ndcg@10=" in line]
    assert sorted(trained) == sorted(f"point {r['point']}" for r in rows)  # each trained by one process
    assert {r["point"] for r in tuned} == {f"mf_bpr-plain-dim4-s{i}" for i in range(3)}
    state, _ = _suite(tmp_path, tiny_pack[0], 60, *skip)  # the same output: every point is already there
    with open(tmp_path / "out" / "cfdim.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)


def test_cfdim_on_a_gpu_runs_the_lightgcn_half_unless_asked_for_mf():
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import gpu_suite

    full = gpu_suite.cf_curves(quick=False, with_mf=False)
    assert full and all(g.startswith("lightgcn-") for g in full)  # the MF-BPR half has CPU rows
    assert full[0] == "lightgcn-*-dim2048-*" and full[-1] == "lightgcn-*-dim4-*"  # what the CPU cannot do first
    both = gpu_suite.cf_curves(quick=False, with_mf=True)
    assert both[:len(full)] == full and {g.split("-")[0] for g in both} == {"lightgcn", "mf_bpr"}
    assert gpu_suite.cf_curves(quick=True, with_mf=False) == ["mf_bpr-plain-dim4-*"]


def test_cfdim_at_full_size_continues_the_committed_rows_on_their_data(tmp_path, monkeypatch):
    """At full sizes the cfdim piece drops the pack's data settings (other run ids) and runs only when
    genrec's loader gives, offline, the data whose fingerprint the committed rows carry."""
    from types import SimpleNamespace

    import genrec.data

    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import gpu_suite

    done = tmp_path / "done.csv"
    done.write_text("run_id,data_fingerprint\nabc,f00d\n")
    common = ["run.device=cuda", "data.source=ml-1m", "data.path=benchmarks/gpu_pack/ml-1m.npz"]

    def suite():
        return SimpleNamespace(quick=False, info={})

    def no_data(cfg):
        raise FileNotFoundError("ml-1m is not cached and GENREC_OFFLINE is set")

    monkeypatch.setattr(genrec.data, "load_data", no_data)
    sets, why = gpu_suite.cf_data_sets(suite(), common, done)
    assert sets is None and "not cached" in why and "GPU.md" in why
    monkeypatch.setattr(genrec.data, "load_data", lambda cfg: SimpleNamespace(fingerprint=lambda: "beef"))
    sets, why = gpu_suite.cf_data_sets(suite(), common, done)
    assert sets is None and "beef" in why and "f00d" in why
    monkeypatch.setattr(genrec.data, "load_data", lambda cfg: SimpleNamespace(fingerprint=lambda: "f00d"))
    s = suite()
    sets, why = gpu_suite.cf_data_sets(s, common, done)
    assert sets == ["run.device=cuda"] and why == "" and "f00d" in s.info["cfdim_data"]
    quick = SimpleNamespace(quick=True, info={})
    assert gpu_suite.cf_data_sets(quick, common, done) == (common, "")  # the quick test keeps the pack
