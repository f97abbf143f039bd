"""Runs describe themselves: one run-folder layout, `genrec eval` re-evaluates without training, an
identical `genrec run` adds no duplicate row, `genrec config` and `genrec --version` (through the CLI)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genrec.scaling.leaderboard import read_rows

pytestmark = pytest.mark.slow  # end to end: the fast tier is `pytest -m "not slow"`

CLI = [sys.executable, "-m", "genrec.cli"]


def _cli(*args, ok=True):
    r = subprocess.run(CLI + list(args), capture_output=True, text=True)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def _folder(stdout: str) -> Path:
    return Path(next(line.split("run folder: ")[1] for line in stdout.splitlines() if "run folder: " in line))


def test_run_folder_eval_and_no_duplicate_rows(tmp_path):
    lb = tmp_path / "lb.csv"
    base = ["--set", "data.source=synthetic", "--set", f"run.output_dir={tmp_path / 'runs'}", "--set",
            "run.family=cf", "--set", "run.model=mf_bpr", "--set", "cf.dim=8", "--set", "train.epochs=2",
            "--set", "train.progress=false", "--leaderboard", str(lb)]
    first = _cli("run", *base)
    run_dir = _folder(first.stdout)
    for name in ("config.yaml", "metrics.json", "item_ids.json", "run.log", "model"):
        assert (run_dir / name).exists(), name
    assert json.loads((run_dir / "item_ids.json").read_text())[:2] == ["i0", "i1"]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["cf"]["dim"] == 8
    again = _cli("run", *base)
    assert "already has a row" in again.stdout and len(read_rows(lb)) == 1
    # evaluation settings are not the training identity: same folder, no retraining, a new row
    other = _cli("run", *base, "--set", "eval.max_users=50")
    assert _folder(other.stdout) == run_dir and len(read_rows(lb)) == 2
    ev = _cli("eval", str(run_dir), "--set", "eval.split=valid", "--leaderboard", str(lb))
    rows = read_rows(lb)
    assert len(rows) == 3 and rows[-1]["eval_split"] == "valid" and _folder(ev.stdout) == run_dir
    assert json.loads(rows[-1]["extra"])["epochs_run"] == 2  # resumed the finished training, did not retrain
    assert list((run_dir / "evals").glob("*.json"))
    bad = _cli("eval", str(run_dir), "--set", "cf.dim=16", ok=False)
    assert bad.returncode == 2 and "only eval.* and decode.*" in bad.stderr
    missing = _cli("eval", str(tmp_path), ok=False)
    assert missing.returncode == 2 and "not a genrec run folder" in missing.stderr


def test_config_and_version():
    out = _cli("config", "--set", "run.family=cf", "--set", "cf.dim=32").stdout
    cfg = yaml.safe_load(out)
    assert cfg["cf"]["dim"] == 32 and cfg["run"]["family"] == "cf" and "decode" in cfg
    assert _cli("--version").stdout.startswith("genrec ")
    for sub in ("run", "eval", "config", "sweep", "data", "encode", "tokenize", "leaderboard", "plot"):
        assert "example:" in _cli(sub, "--help").stdout, sub
