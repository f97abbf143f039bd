"""Tracking through accelerate's trackers (TensorBoard by default) and a quiet log (genrec.train)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FILES = [str(REPO / "configs" / f) for f in ("base.yaml", "data/synthetic.yaml", "cf/mf_bpr.yaml")]
SETTINGS = ["train.progress=false", "train.epochs=3", "train.eval_every=1", "train.patience=0",
            "train.checkpoint_every=1", "run.device=cpu", "train.log_every=1", "train.batch_size=512"]


def _events(folder: Path):
    """Every TensorBoard event file under folder, loaded with tensorboard's EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = []
    for f in sorted(folder.rglob("events.out.tfevents.*")):
        ea = EventAccumulator(str(f))
        ea.Reload()
        out.append(ea)
    return out


def _hparam_names(accs) -> set[str]:
    from tensorboard.plugins.hparams import plugin_data_pb2

    names = set()
    for ea in accs:
        try:
            content = ea.PluginTagToContent("hparams").get("_hparams_/session_start_info")
        except KeyError:  # no hparams in this file
            continue
        if content:
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
            names |= set(data.session_start_info.hparams.keys())
    return names


def test_run_writes_tensorboard_scalars_and_hparams(tmp_path, caplog):
    from genrec.config import load_config
    from genrec.pipeline import run_point

    caplog.set_level(logging.INFO)
    res = run_point(load_config(FILES, SETTINGS + [f"run.output_dir={tmp_path}"]))
    accs = _events(Path(res["run_dir"]) / "tb")
    assert accs, "no TensorBoard event files"
    scalars = {tag: ea.Scalars(tag) for ea in accs for tag in ea.Tags()["scalars"]}
    assert {"mf_bpr/loss", "mf_bpr/lr", "mf_bpr/valid_recall@10", "mf_bpr/epoch_loss"} <= set(scalars)
    assert len(scalars["mf_bpr/valid_recall@10"]) == 3  # one per epoch
    assert len(scalars["mf_bpr/loss"]) == res["extra"].get("steps", len(scalars["mf_bpr/loss"]))
    assert scalars["mf_bpr/lr"][0].value == pytest.approx(5e-3)
    assert {"train.lr", "cf.dim", "run.model", "data.source"} <= _hparam_names(accs)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "Saving current state" not in text and "Model weights saved" not in text
    assert "Removed shared tensor" not in text
    epoch_lines = [r for r in caplog.records if r.getMessage().startswith("mf_bpr epoch ")]
    assert len(epoch_lines) == 3  # one line per epoch


def _tiny_train(tmp_path, trackers):
    from genrec.config import TrainConfig
    from genrec.train import train_loop

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(3)]
    cfg = TrainConfig(epochs=2, progress=False, trackers=trackers, log_every=1, checkpoint_every=1)
    return train_loop(model, lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), lambda ep: iter(data), cfg,
                      tmp_path / "run", device=torch.device("cpu"))


def test_unknown_or_missing_tracker_warns_once(tmp_path, caplog):
    import genrec.train as train

    train._warned.discard("no-such-tracker")
    caplog.set_level(logging.INFO)
    res = _tiny_train(tmp_path, ["no-such-tracker"])
    _tiny_train(tmp_path / "again", ["no-such-tracker"])  # a second run in the same process: no new warning
    assert res.epochs_run == 2
    warns = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warns) == 1 and "no-such-tracker" in warns[0].getMessage()
    assert not (tmp_path / "run" / "tb").exists()
    assert not any("Saving current state" in r.getMessage() or "Model weights saved" in r.getMessage()
                   for r in caplog.records)


def test_trackers_off(tmp_path):
    _tiny_train(tmp_path, [])
    assert not list((tmp_path / "run").rglob("events.out.tfevents.*"))
    assert (tmp_path / "run" / "checkpoint").is_dir()


def test_flat_hparams():
    from genrec.train import flat_hparams

    assert flat_hparams({"a": {"b": 1, "c": [1, 2], "d": None}, "e": "x"}) == {"a.b": 1, "a.c": "[1, 2]",
                                                                                "a.d": "None", "e": "x"}
