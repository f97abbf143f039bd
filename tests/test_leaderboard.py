"""Leaderboard rows: fixed header, one row per append, unknown columns kept in `extra`."""
import csv
import json
import os
from pathlib import Path

from genrec.config import load_config
from genrec.scaling.leaderboard import columns, append_row, axes_of, done_run_ids, make_row, read_rows


def test_make_row_and_append(tmp_path):
    cfg = load_config([], ["run.family=cf", "run.model=mf_bpr", "cf.dim=32", "cf.directspec=true"])
    res = {"run_id": "abc", "metrics": {"recall@10": 0.25, "ndcg@10": 0.125, "users_evaluated": 9},
           "params": {"params_total": 10}, "extra": {"item_erank": 3.5}, "data": {"name": "synthetic"}}
    row = make_row(cfg, res, sweep="s", point="p")
    assert row["cf_dim"] == 32 and row["cf_variant"] == "directspec" and row["family"] == "cf"
    path = tmp_path / "lb.csv"
    append_row(path, row)
    append_row(path, {**row, "run_id": "def", "status": "failed", "brand_new_column": 7})
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    assert lines[0] == columns() and all(len(r) == len(columns()) for r in lines)
    rows = read_rows(path)
    assert rows[0]["recall@10"] == "0.25" and json.loads(rows[0]["extra"]) == {"item_erank": 3.5}
    assert json.loads(rows[1]["extra"])["brand_new_column"] == 7
    assert done_run_ids(path) == {"abc"}


def test_axes_blank_where_not_applicable():
    a = axes_of(load_config([], ["run.family=llm", "llm.lora_rank=4"]))
    assert a["lora_rank"] == 4 and "cf_dim" not in a and "sid_levels" not in a


def test_a_row_records_the_commit_of_the_code_not_of_the_working_directory(tmp_path):
    """git_commit / git_dirty come from the checkout genrec is imported from, wherever the command runs
    (here from a folder that is not a git checkout at all)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=repo).stdout.strip()
    code = ("import json; from genrec.scaling.leaderboard import git_state; print(json.dumps(git_state()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(repo)}).stdout
    commit, dirty = json.loads(out)
    assert head and commit == head and isinstance(dirty, bool)
