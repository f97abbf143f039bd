"""Data-parallel training of one point (genrec.train under `accelerate launch`) and sharded evaluation.

The 2-process test launches `genrec run` on a tiny MF-BPR point on the CPU (gloo; rank 0 alone writes the
leaderboard row) and compares it with one process training the same global batch: per-process batch B/2 on two ranks = batches 2i and 2i+1 of the same
seeded stream, all-reduced (mean) = the one-process batch i of size B. The runs agree closely but not bit
for bit: the all-reduce sums the two half-batch gradients in another order than one backward pass over the
whole batch (float rounding), and the loss means are taken per half batch; after a few epochs those
rounding differences can move a few users across the top-10 boundary.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TOL = 0.02  # absolute, on recall@10 / ndcg@10 over 300 users (6 users' worth of recall)
SETTINGS = ["train.progress=false", "train.epochs=4", "train.eval_every=1", "train.patience=0",
            "train.checkpoint_every=1", "run.device=cpu", "train.trackers=[]", "train.lr=0.01"]

WORKER = """
import json, sys
from genrec.cli import main
files, sets, out, csv = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
argv = ["run", "--leaderboard", csv] + [a for f in files for a in ("-c", f)] + [a for s in sets for a in ("--set", s)]
assert main(argv) == 0
import torch.distributed as dist
if dist.get_rank() == 0:
    open(out, "w").write(json.dumps({"world": dist.get_world_size()}))
"""
FILES = [str(REPO / "configs" / f) for f in ("base.yaml", "data/synthetic.yaml", "cf/mf_bpr.yaml")]


class _Fake:
    """A score model: item i scores -(i - target-ish)^2 so ranks differ per user."""

    def score(self, users, histories):
        import torch

        u = users.double()[:, None]
        return -((torch.arange(40, dtype=torch.float64)[None, :] - (u * 7) % 40) ** 2) + u * 1e-3


def _evalset(n: int):
    from genrec.data import EvalSet

    rng = np.random.default_rng(0)
    return EvalSet(np.arange(n), [rng.integers(0, 40, 3) for _ in range(n)], rng.integers(0, 40, n))


@pytest.mark.parametrize("n,world", [(301, 2), (7, 3), (2, 4)])
def test_sharded_evaluate_counts_each_user_once(n, world):
    from genrec.eval.evaluate import evaluate, evaluate_part, shard_bounds, summarize_parts

    ev = _evalset(n)
    whole = evaluate(_Fake(), ev, 40, [5, 10], batch_size=16)
    parts = [evaluate_part(_Fake(), ev, 40, [5, 10], batch_size=16, rank=r, world=world) for r in range(world)]
    rows = np.concatenate([p["rows"] for p in parts])
    assert sorted(rows.tolist()) == list(range(n))  # every user once, none twice
    assert [shard_bounds(n, r, world) for r in range(world)][-1][1] == n
    merged = summarize_parts(parts, [5, 10], True, 0)
    assert merged["users_evaluated"] == n == whole["users_evaluated"]
    assert merged == pytest.approx(whole)
    with pytest.raises(RuntimeError, match="more than one process"):  # a duplicated block is refused
        summarize_parts(parts + parts[:1], [5, 10], True, 0)


def test_shard_batches_equal_counts():
    from genrec.train import shard_batches

    got = [list(shard_batches(iter(range(7)), r, 2)) for r in range(2)]
    assert got == [[0, 2, 4], [1, 3, 5]]  # the 7th batch is dropped: the same number on both ranks
    assert list(shard_batches(iter(range(3)), 0, 1)) == [0, 1, 2]


@pytest.mark.slow
def test_two_process_point_matches_one_process(tmp_path):
    from genrec.pipeline import run_point
    from genrec.config import load_config

    from genrec.pipeline import prepare
    from genrec.scaling.leaderboard import read_rows

    cfg = load_config(FILES, SETTINGS + [f"run.output_dir={tmp_path / 'one'}"])
    n_pairs = sum(len(h) for h in prepare(cfg)[1].valid.histories)  # training (user, item) pairs
    half = -(-n_pairs // 8)  # 8 half batches an epoch: 4 full pairs of them, so no rank drops a batch
    cfg.train.batch_size = 2 * half
    one = run_point(cfg)
    out, csv = tmp_path / "two.json", tmp_path / "two.csv"
    sets = SETTINGS + [f"run.output_dir={tmp_path / 'two'}", f"train.batch_size={half}"]
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
           str(29500 + os.getpid() % 1000), str(script), json.dumps(FILES), json.dumps(sets), str(out), str(csv)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(out.read_text())["world"] == 2
    rows = read_rows(csv)
    assert len(rows) == 1, f"{len(rows)} rows for one point: only rank 0 may write"  # `genrec run`, 2 ranks
    m1 = one["metrics"]
    m2 = {k: float(rows[0][k]) for k in ("recall@10", "ndcg@10", "recall@50", "users_evaluated")}
    print(f"recall@10 one={m1['recall@10']:.4f} two={m2['recall@10']:.4f}; "
          f"ndcg@10 one={m1['ndcg@10']:.4f} two={m2['ndcg@10']:.4f}")
    assert m2["users_evaluated"] == m1["users_evaluated"] == 300  # each test user exactly once
    for k in ("recall@10", "ndcg@10", "recall@50"):
        assert abs(m1[k] - m2[k]) <= TOL, (k, m1[k], m2[k])
    run_dirs = [d for d in (tmp_path / "two").iterdir() if d.is_dir()]
    assert len(run_dirs) == 1 and (run_dirs[0] / "metrics.json").is_file()
    assert (run_dirs[0] / "checkpoint").is_dir() and not list(run_dirs[0].glob("*.tmp"))


ADAP_WORKER = """
import sys, numpy as np, torch, torch.distributed as dist
from genrec.models.cf.losses import AdapTau
rank, init, out, sync_first = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
sys.path.insert(0, sys.argv[5])
from test_ddp import adap_case
users, items, ue, ie, losses = adap_case()
at = AdapTau(len(ue), tau=0.2)
mine = np.arange(len(users)) % 2 == rank  # this process's batches: every other interaction
at.record(torch.from_numpy(users[mine]), losses[torch.from_numpy(mine)])
cnt = None
if sync_first:  # a checkpoint syncs before the next epoch's update, which must not sum again
    at.sync()
    at.sync()
    cnt = float(at.loss_cnt.sum())
at.update(ue, ie, users, items)
torch.save({"w": at.w, "w0": at.w0, "cnt": cnt}, out)
dist.destroy_process_group()
"""


def adap_case():
    """Interactions, embeddings and per-interaction losses for the Adap-tau data-parallel test."""
    import torch

    g = torch.Generator().manual_seed(1)
    ie = torch.randn(30, 16, generator=g)
    ue = ie[torch.arange(40) % 30] + 0.5 * torch.randn(40, 16, generator=g)
    users = np.repeat(np.arange(40), np.arange(40) % 5 + 1)
    items = (users * 3 + np.arange(len(users))) % 30
    return users, items, ue, ie, torch.rand(len(users), generator=g) * 2


@pytest.mark.parametrize("sync_first", [False, True])
def test_adap_tau_temperatures_are_the_one_process_ones_under_data_parallelism(tmp_path, sync_first):
    """Two gloo processes each record the losses of half the interactions; the per-user temperatures they
    compute equal those of one process that saw all of them (without the sum over processes each would use
    its own half: other w_u, and w_0 for users all of whose batches went to the other process)."""
    import torch

    from genrec.models.cf.losses import AdapTau

    users, items, ue, ie, losses = adap_case()
    one = AdapTau(len(ue), tau=0.2)
    one.record(torch.from_numpy(users), losses)
    one.update(ue, ie, users, items)
    script = tmp_path / "adap_worker.py"
    script.write_text(ADAP_WORKER)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    init = f"file://{tmp_path / 'pg'}"
    procs = [subprocess.Popen([sys.executable, str(script), str(r), init, str(tmp_path / f"w{r}.pt"),
                               str(int(sync_first)), str(Path(__file__).parent)], env=env,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
    for r in range(2):
        got = torch.load(tmp_path / f"w{r}.pt")
        assert got["w0"] == pytest.approx(one.w0) and torch.allclose(got["w"], one.w, rtol=1e-6, atol=0)
        assert got["cnt"] == (len(users) if sync_first else None)  # each interaction counted once
