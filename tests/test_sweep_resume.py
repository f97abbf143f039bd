"""Interrupt safety: SIGKILL a sweep mid-training and rerun it; concurrent appends never tear rows."""
import csv
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genrec.scaling.leaderboard import append_row, columns, read_rows
from genrec.scaling.sweep import load_sweep

pytestmark = pytest.mark.slow  # end to end: the fast tier is `pytest -m "not slow"`
REPO = Path(__file__).resolve().parent.parent
BASE = [str(REPO / "configs" / "base.yaml"), str(REPO / "configs" / "data" / "synthetic.yaml")]

# A trainable toy family, registered from user code: item-to-item embeddings trained with
# genrec.train.train_loop; each epoch waits a little so the test can kill the sweep between checkpoints.
TOY = '''
import time
from dataclasses import dataclass
import numpy as np
import torch
from genrec.family import Family, FamilyResult, register_family
from genrec.runtime import count_params
from genrec.train import train_loop


@dataclass
class ToyConfig:
    dim: int = 8


class Toy(torch.nn.Module):
    def __init__(self, n_items, dim):
        super().__init__()
        self.emb = torch.nn.Embedding(n_items, dim)

    def score(self, users, histories):
        last = torch.tensor([int(h[-1]) if len(h) else 0 for h in histories])
        return self.emb(last) @ self.emb.weight.T


def run(ctx):
    torch.manual_seed(ctx.cfg.run.seed)
    model = Toy(ctx.data.n_items, ctx.cfg.toy.dim)
    pairs = np.concatenate([np.stack([s[:-1], s[1:]], 1) for s in ctx.split.train if len(s) > 1])
    pairs = torch.from_numpy(pairs).long()

    def batches(epoch):
        time.sleep(0.3)
        yield from pairs.split(256)

    def loss_fn(m, b):
        logits = m.emb(b[:, 0]) @ m.emb.weight.T
        return torch.nn.functional.cross_entropy(logits, b[:, 1])

    res = train_loop(model, loss_fn, batches, ctx.cfg.train, ctx.run_dir / "rec", device=torch.device("cpu"))
    return FamilyResult(model, count_params(model), {"resumed_from_epoch": res.resumed_from_epoch,
                                                    "epochs_run": res.epochs_run}, res.train_time_s)


class ToyFamily(Family):
    name = "toy"
    sections = {"toy": ToyConfig}
    axis_columns = ("toy_dim",)
    numeric_axes = frozenset({"toy_dim"})

    def axes(self, cfg):
        return {"toy_dim": cfg.toy.dim}

    def run(self, ctx):
        return run(ctx)


register_family(ToyFamily())
'''

DRIVER = '''
import importlib.util, sys
sys.path.insert(0, {toydir!r})
import toyfam  # registers the "toy" family
spec = importlib.util.spec_from_file_location("scale", {scale!r})
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
sys.exit(m.main(sys.argv[1:]))
'''


def _rows_raw(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_sigkill_mid_training_then_resume(tmp_path, monkeypatch, request):
    from genrec.family import unregister_family

    request.addfinalizer(lambda: unregister_family("toy"))
    (tmp_path / "toyfam.py").write_text(TOY)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(toydir=str(tmp_path), scale=str(REPO / "benchmarks" / "scale.py")))
    sweep = tmp_path / "kill.yaml"
    sweep.write_text(f"""
name: kill
base: {json.dumps(BASE)}
set: {{run.output_dir: {tmp_path / 'runs'}, train.progress: false, data.n_users: 120, data.n_items: 60}}
runs:
  - name: pop
    set: {{run.family: baseline, run.model: popularity}}
  - name: toy
    set: {{run.family: toy, run.model: toy, toy.dim: 8, train.epochs: 5, train.patience: 0}}
  - name: rand
    set: {{run.family: baseline, run.model: random}}
""")
    out = tmp_path / "kill.csv"
    monkeypatch.syspath_prepend(str(tmp_path))
    import toyfam  # noqa: F401 - registers the toy family in this process too

    toy = [p for p in load_sweep(sweep).points if p.block == "toy"][0]
    from genrec.scaling.runner import bind_data

    bind_data([toy], {})  # the run folder is named by config + data fingerprint
    state = tmp_path / "runs" / toy.train_id / "rec" / "train_state.json"
    cmd = [sys.executable, str(driver), "--sweep", str(sweep), "--out", str(out), "--no-plot"]
    env = {**os.environ, "GENREC_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if out.exists() and len(read_rows(out)) >= 1 and state.exists():
                break
            time.sleep(0.05)
        assert proc.poll() is None, "sweep finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    killed_at = json.loads(state.read_text())
    assert not killed_at["done"] and [r["point"] for r in read_rows(out)] == ["pop-s0"]

    # rerun in this process (saves a second interpreter start), with the same toy family
    import importlib.util

    spec = importlib.util.spec_from_file_location("scale_for_resume", REPO / "benchmarks" / "scale.py")
    scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale)
    assert scale.main(cmd[2:]) == 0
    raw = _rows_raw(out)
    assert "toy_dim" in raw[0] and all(len(r) == len(raw[0]) for r in raw)  # no torn rows
    rows = read_rows(out)
    ok = [r for r in rows if r["status"] == "ok"]
    assert len({r["run_id"] for r in ok}) == len(ok) == 3  # every point once
    assert sorted(r["point"] for r in ok) == ["pop-s0", "rand-s0", "toy-s0"]
    toy_row = [r for r in ok if r["point"] == "toy-s0"][0]
    extra = json.loads(toy_row["extra"])
    assert extra["resumed"] == ["rec/train_state.json"]
    assert extra["resumed_from_epoch"] == killed_at["epoch"] + 1 and extra["epochs_run"] == 5
    log = (tmp_path / "runs" / toy.train_id / "run.log").read_text()
    assert "resumes" in log and "resuming" in log


def _writer(path: str, tag: str, n: int) -> None:
    big = json.dumps({"k": ["x, \"quoted\"" * 20] * 30})  # long cells with commas and quotes
    for i in range(n):
        append_row(path, {"run_id": f"{tag}{i}", "status": "ok", "config": big, "extra": big, "point": tag})


def test_concurrent_appends_do_not_tear(tmp_path):
    path = str(tmp_path / "lb.csv")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, t, 150)) for t in ("a", "b", "c")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    raw = _rows_raw(Path(path))
    assert raw[0] == columns() and len(raw) == 1 + 450
    assert all(len(r) == len(raw[0]) for r in raw)
    rows = read_rows(path)
    assert len({r["run_id"] for r in rows}) == 450
    assert all(json.loads(r["config"])["k"][0].startswith("x, ") for r in rows)


def test_a_point_another_process_runs_is_taken_up_last(tmp_path, monkeypatch):
    """Two processes on one sweep: a point whose lock another process holds is deferred, the next point
    runs first, and the deferred one is waited for (then skipped if the other process wrote its row)."""
    import fcntl
    import threading
    from types import SimpleNamespace

    from genrec.scaling import runner

    def point(name):
        return SimpleNamespace(name=name, run_id=name, train_id=name,
                               cfg=SimpleNamespace(run=SimpleNamespace(output_dir=str(tmp_path / "runs"))))

    order = []

    def fake_run_one(p, run_dir, out, sweep_name, cache, job):
        order.append(p.name)
        return "ok"

    monkeypatch.setattr(runner, "_run_one", fake_run_one)
    a_dir = tmp_path / "runs" / "a"
    a_dir.mkdir(parents=True)
    fd = os.open(a_dir / ".lock", os.O_RDWR | os.O_CREAT)  # "another process" holds a's lock
    fcntl.flock(fd, fcntl.LOCK_EX)
    released = threading.Timer(1.0, lambda: (fcntl.flock(fd, fcntl.LOCK_UN), os.close(fd)))
    released.start()
    counts = runner.run_points([point("a"), point("b")], tmp_path / "rows.csv", "s", progress=False)
    released.join()
    assert order == ["b", "a"] and counts["ok"] == 2  # b did not queue behind a; a ran once it was free


def test_run_points_can_leave_a_busy_point_to_the_caller(tmp_path, monkeypatch):
    """wait_busy=False (run_tuned's first pass over a group): a point another process holds is not waited
    for but handed back under 'busy'; the free points run."""
    import fcntl
    from types import SimpleNamespace

    from genrec.scaling import runner

    def point(name):
        return SimpleNamespace(name=name, run_id=name, train_id=name,
                               cfg=SimpleNamespace(run=SimpleNamespace(output_dir=str(tmp_path / "runs"))))

    order = []
    monkeypatch.setattr(runner, "_run_one", lambda p, *a: order.append(p.name) or "ok")
    a_dir = tmp_path / "runs" / "a"
    a_dir.mkdir(parents=True)
    fd = os.open(a_dir / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        a, b = point("a"), point("b")
        counts = runner.run_points([a, b], tmp_path / "rows.csv", "s", progress=False, wait_busy=False)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert order == ["b"] and counts["ok"] == 1 and counts["busy"] == [a]
