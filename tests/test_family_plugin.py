"""Families are plugins: a toy family registered from user code runs through a sweep, the leaderboard
and a plot without any edit inside genrec; run.model is validated by each family; the registry drives
the config sections and the leaderboard columns."""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from genrec.config import load_config
from genrec.errors import ConfigError
from genrec.family import Family, FamilyResult, get_family, register_family, unregister_family
from genrec.scaling.leaderboard import columns, read_rows

pytestmark = pytest.mark.slow  # end to end: the fast tier is `pytest -m "not slow"`

REPO = Path(__file__).resolve().parent.parent
BASE = [str(REPO / "configs" / "base.yaml"), str(REPO / "configs" / "data" / "synthetic.yaml")]


@dataclass
class NoisyPopConfig:
    noise: float = 1.0  # popularity plus Gaussian noise of this scale: more noise, worse ranking


class NoisyPop:
    def __init__(self, counts: torch.Tensor, noise: float, seed: int):
        self.counts, self.noise = counts / counts.max(), noise
        self.gen = torch.Generator().manual_seed(seed)

    def score(self, users, histories):
        return self.counts + self.noise * torch.randn(len(users), len(self.counts), generator=self.gen)


class NoisyPopFamily(Family):
    name = "noisypop"
    sections = {"noisypop": NoisyPopConfig}
    models = ("noisypop",)
    axis_columns = ("noise",)
    numeric_axes = frozenset({"noise"})

    def check(self, cfg):
        super().check(cfg)
        if cfg.noisypop.noise < 0:
            raise ConfigError(f"noisypop.noise must be >= 0, got {cfg.noisypop.noise}")

    def axes(self, cfg):
        return {"noise": cfg.noisypop.noise}

    def run(self, ctx):
        _, items = ctx.split.train_pairs()
        counts = torch.from_numpy(np.bincount(items, minlength=ctx.data.n_items).astype(np.float32))
        model = NoisyPop(counts, ctx.cfg.noisypop.noise, ctx.cfg.run.seed)
        return FamilyResult(model, {"params_total": 0, "params_non_embedding": 0, "params_trainable": 0})


@pytest.fixture
def toy_family():
    fam = register_family(NoisyPopFamily())
    yield fam
    unregister_family("noisypop")


def _sweep(tmp_path: Path, extra: str = "") -> Path:
    p = tmp_path / "toy.yaml"
    p.write_text(f"""
name: toy
base: {json.dumps(BASE)}
set: {{run.family: noisypop, run.model: noisypop, run.output_dir: {tmp_path / 'runs'}, train.progress: false}}
grid: {{noisypop.noise: [0.0, 0.3, 3.0]}}
seeds: [0, 1, 2]
{extra}""")
    return p


def test_toy_family_through_sweep_leaderboard_and_plot(toy_family, tmp_path, capsys):
    from genrec.scaling.plots import plot_file
    from genrec.scaling.report import print_leaderboard
    from genrec.scaling.runner import main

    cfg = load_config(BASE, ["run.family=noisypop", "run.model=noisypop", "noisypop.noise=0.5"])
    assert cfg.noisypop.noise == 0.5 and "noise" in columns()
    out = tmp_path / "toy.csv"
    assert main(["--sweep", str(_sweep(tmp_path)), "--out", str(out), "--no-plot"]) == 0
    rows = read_rows(out)
    assert len(rows) == 9 and {r["status"] for r in rows} == {"ok"} and {r["noise"] for r in rows} == {"0", "0.3", "3"}
    by_noise = {n: np.mean([float(r["recall@10"]) for r in rows if r["noise"] == n]) for n in ("0", "3")}
    assert by_noise["0"] > by_noise["3"]  # popularity beats noise: the family really ran
    capsys.readouterr()
    print_leaderboard(out, metric="recall@10")
    table = capsys.readouterr().out
    assert "noisypop" in table and table.count("\n") >= 3
    pngs = plot_file(out, out_dir=tmp_path / "plots", metric="recall@10")
    assert pngs and all(Path(p).stat().st_size > 0 for p in pngs)


def test_bad_model_and_unknown_family_are_config_errors(toy_family):
    with pytest.raises(ConfigError, match="unknown sid model 'tigr'"):
        get_family("sid").check(load_config(BASE, ["run.family=sid", "run.model=tigr"]))
    with pytest.raises(ConfigError, match="unknown family 'nope'"):
        get_family("nope")
    with pytest.raises(ConfigError, match="noisypop.noise must be >= 0"):
        get_family("noisypop").check(load_config(BASE, ["run.family=noisypop", "run.model=noisypop",
                                                        "noisypop.noise=-1"]))
    with pytest.raises(ConfigError, match="unknown key 'noisypop.nois'"):
        load_config(BASE, ["noisypop.nois=1"])


def test_section_clash_is_refused(toy_family):
    class Clash(Family):
        name = "clash"
        sections = {"noisypop": NoisyPopConfig}

    with pytest.raises(ValueError, match="belongs to family 'noisypop'"):
        register_family(Clash())


DRIVER = """
import sys
sys.path.insert(0, {tests!r})
from test_family_plugin import NoisyPopFamily
from genrec.family import register_family
from genrec.scaling.runner import main
register_family(NoisyPopFamily())
sys.exit(main(["--sweep", {sweep!r}, "--out", {out!r}, "--no-plot"]))
"""


def test_two_sweeps_on_the_same_points_run_each_point_once(toy_family, tmp_path):
    """Two processes (fresh interpreters: a fork after torch's thread pool started can hang) run the
    same sweep at once; the per-point lock makes each point train and write once."""
    import os
    import subprocess
    import sys

    sweep, out = _sweep(tmp_path), tmp_path / "both.csv"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(tests=str(Path(__file__).parent), sweep=str(sweep), out=str(out)))
    env = {**os.environ, "GENREC_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, str(driver)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    rows = read_rows(out)
    assert len(rows) == 9 and len({r["run_id"] for r in rows}) == 9  # each point trained and written once


def test_edited_data_gets_a_new_run_id(tmp_path, make_cfg):
    """The run identity includes the data's content: editing your own file never resumes or skips on
    a model trained on the old data."""
    from genrec.data import load_data
    from genrec.identity import run_id

    f = tmp_path / "inter.csv"
    rows = [f"{u},{i},{t}" for u in range(6) for t, i in enumerate(range(u, u + 5))]
    f.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    cfg = make_cfg("data.source=csv", f"data.path={f}", "data.item_text_cols=[]")
    before = run_id(cfg, load_data(cfg.data).fingerprint())
    f.write_text("user_id,item_id,timestamp\n" + "\n".join(rows[:-1] + ["5,0,99"]) + "\n")
    after = run_id(cfg, load_data(cfg.data).fingerprint())
    assert before != after and run_id(cfg) not in (before, after)
