"""Sweep expansion (grid x points x seeds, blocks), errors, selection, and the scale.py harness."""
import importlib.util
import json
from pathlib import Path

import pytest

from genrec.errors import ConfigError
from genrec.scaling.leaderboard import read_rows
from genrec.scaling.sweep import load_sweep, parse_shard, select, shard

REPO = Path(__file__).resolve().parent.parent
BASE = [str(REPO / "configs" / "base.yaml"), str(REPO / "configs" / "data" / "synthetic.yaml")]


def _scale():
    spec = importlib.util.spec_from_file_location("genrec_scale_script", REPO / "benchmarks" / "scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write(tmp_path, text: str, name: str = "sw.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_grid_points_seeds_expand(tmp_path):
    p = _write(tmp_path, f"""
base: {json.dumps(BASE)}
set: {{run.family: cf, run.model: mf_bpr, train.epochs: 2}}
grid: {{cf.dim: [8, 16, 32], cf.loss: [bpr, softmax]}}
points:
  small: {{cf.layers: 1}}
  big: {{cf: {{layers: 3}}}}
seeds: [0, 1]
""")
    sw = load_sweep(p)
    assert sw.name == "sw" and len(sw.points) == 2 * 3 * 2 * 2
    names = [q.name for q in sw.points]
    assert names[0] == "small-dim8-lossbpr-s0" and names[-1] == "big-dim32-losssoftmax-s1"
    assert len(set(names)) == len(names) and len({q.run_id for q in sw.points}) == len(names)
    big = [q for q in sw.points if q.name == "big-dim16-lossbpr-s1"][0]
    assert (big.cfg.cf.layers, big.cfg.cf.dim, big.cfg.cf.loss, big.cfg.run.seed) == (3, 16, "bpr", 1)
    assert big.cfg.train.epochs == 2 and big.cfg.data.source == "synthetic"
    assert big.axes == {"cf": {"layers": 3}, "cf.dim": 16, "cf.loss": "bpr"}
    # stable: a second expansion gives the same names and run ids
    assert [(q.name, q.run_id) for q in load_sweep(p).points] == [(q.name, q.run_id) for q in sw.points]
    # command-line overrides apply last, to every point
    sw2 = load_sweep(p, ["train.epochs=1"])
    assert all(q.cfg.train.epochs == 1 for q in sw2.points)
    assert sw2.points[0].run_id != sw.points[0].run_id


def test_blocks_inherit_and_relative_base(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "b.yaml").write_text("train: {epochs: 7}\n")
    p = _write(tmp_path, f"""
name: mixed
base: {json.dumps(BASE)}
set: {{train.lr: 0.01}}
seeds: [0, 1]
runs:
  - name: pop
    set: {{run.family: baseline, run.model: popularity}}
    seeds: [0]
  - name: cf
    base: [conf/b.yaml]
    set: {{run.family: cf, run.model: mf_bpr}}
    grid: {{cf.dim: [4, 8]}}
""")
    sw = load_sweep(p)
    assert sw.name == "mixed"
    assert [q.name for q in sw.points] == ["pop-s0", "cf-dim4-s0", "cf-dim4-s1", "cf-dim8-s0", "cf-dim8-s1"]
    cf = sw.points[1].cfg
    assert cf.train.epochs == 7 and cf.train.lr == 0.01 and cf.run.family == "cf"
    assert sw.points[0].cfg.train.epochs != 7 and sw.points[0].block == "pop"


@pytest.mark.parametrize("body,needle", [
    ("set: {train.epochz: 3}", "train.epochz"),
    ("grid: {cf.dimm: [1, 2]}", "cf.dimm"),
    ("points: {a: {sid_model.layers: 2}}", "sid_model.layers"),
    ("grid: {cf.dim: [8, 'x']}", "cf.dim"),
    ("sets: {train.epochs: 3}", "sets"),
    ("runs: [{name: a, grid: {data.nope: [1]}}]", "data.nope"),
])
def test_unknown_keys_name_the_file_and_key(tmp_path, body, needle):
    p = _write(tmp_path, f"base: {json.dumps(BASE)}\n{body}\n", name="broken.yaml")
    with pytest.raises(ConfigError) as e:
        load_sweep(p)
    assert "broken.yaml" in str(e.value) and needle in str(e.value)


def test_missing_base_and_duplicates(tmp_path):
    with pytest.raises(ConfigError, match="nothere.yaml"):
        load_sweep(_write(tmp_path, "base: [nothere.yaml]\n"))
    # popularity ignores nothing in the config, but two identical points share a run id: one is dropped
    p = _write(tmp_path, f"base: {json.dumps(BASE)}\ngrid: {{run.name: [a, b]}}\n", name="dup.yaml")
    sw = load_sweep(p)
    assert len(sw.points) == 1 and sw.duplicates == ["nameb-s0"]


def test_select_and_shard(tmp_path):
    p = _write(tmp_path, f"base: {json.dumps(BASE)}\ngrid: {{data.n_items: [50, 60, 70, 80, 90]}}\n")
    pts = load_sweep(p).points
    assert [q.name for q in select(pts, "n_items6*,n_items90-s0")] == ["n_items60-s0", "n_items90-s0"]
    # in the order of the patterns; a point matched twice comes once, where it first matched
    assert [q.name for q in select(pts, "n_items9*,n_items5*,n_items*0-s0")] == [
        "n_items90-s0", "n_items50-s0", "n_items60-s0", "n_items70-s0", "n_items80-s0"]
    with pytest.raises(ConfigError, match="matches no point"):
        select(pts, "zzz")
    assert parse_shard("1/2") == (1, 2)
    for bad in ("2/2", "x", "1/0"):
        with pytest.raises(ConfigError):
            parse_shard(bad)
    parts = [shard(pts, i, 3) for i in range(3)]
    assert sorted(q.name for part in parts for q in part) == sorted(q.name for q in pts)


def test_every_sweep_file_dry_runs(tmp_path, capsys):
    files = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))
    assert {f.stem for f in files} >= {"quickstart", "sid_recommender_size", "sid_quantizer", "sid_encoder",
                                       "cf_dim", "llm_lora", "data_fraction", "inject_ablation"}
    scale = _scale()
    for f in files:
        assert scale.main(["--sweep", str(f), "--dry-run", "--out", str(tmp_path / "x.csv")]) == 0, f
        out = capsys.readouterr().out
        assert f"sweep {load_sweep(f).name}" in out
    assert not (tmp_path / "x.csv").exists()


def test_scale_runs_skips_and_records_failures(tmp_path, capsys):
    p = _write(tmp_path, f"""
name: smoke
base: {json.dumps(BASE)}
set: {{run.output_dir: {tmp_path / 'runs'}, train.progress: false}}
runs:
  - name: pop
    set: {{run.family: baseline, run.model: popularity}}
  - name: rand
    set: {{run.family: baseline, run.model: random}}
    seeds: [0, 1]
  - name: bad
    set: {{run.family: llm, run.model: lora, llm.model: {tmp_path / 'no-such-model'}, eval.ks: [5, 10]}}
""")
    out = tmp_path / "lb.csv"
    scale = _scale()
    bad_model = _write(tmp_path, p.read_text().replace("run.model: popularity", "run.model: nosuch"), "bad.yaml")
    assert scale.main(["--sweep", str(bad_model), "--out", str(out), "--no-plot"]) == 2  # checked before any run
    assert "point pop-s0: run.model: unknown baseline model 'nosuch'" in capsys.readouterr().err
    assert not out.exists()
    assert scale.main(["--sweep", str(p), "--out", str(out), "--no-plot"]) == 0
    rows = read_rows(out)
    assert [r["point"] for r in rows] == ["pop-s0", "rand-s0", "rand-s1", "bad-s0"]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "failed"]
    assert "no-such-model" in json.loads(rows[3]["extra"])["error"]
    assert all(r["sweep"] == "smoke" for r in rows) and float(rows[0]["recall@10"]) > float(rows[1]["recall@10"])
    log = (Path(json.loads(rows[3]["extra"])["run_dir"]) / "run.log").read_text()
    assert "Traceback" in log and "no-such-model" in log
    text = capsys.readouterr().out
    assert "failed: 1 row(s): bad-s0" in text and "popularity" in text
    # a dry run (no data loaded) tells the done points apart by the data fingerprint the CSV records
    capsys.readouterr()
    assert scale.main(["--sweep", str(p), "--out", str(out), "--dry-run"]) == 0
    plan = [ln.split()[:2] for ln in capsys.readouterr().out.splitlines()[1:5]]
    assert plan == [["done", "pop-s0"], ["done", "rand-s0"], ["done", "rand-s1"], ["run", "bad-s0"]]
    # a rerun skips the ok points and retries only the failed one
    assert scale.main(["--sweep", str(p), "--out", str(out), "--no-plot"]) == 0
    rows = read_rows(out)
    assert len(rows) == 5 and rows[4]["point"] == "bad-s0"
    # --only + --force rerun one point
    assert scale.main(["--sweep", str(p), "--out", str(out), "--no-plot", "--only", "pop", "--force"]) == 0
    assert [r["point"] for r in read_rows(out)][5:] == ["pop-s0"]
