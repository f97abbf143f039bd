"""Typed config: YAML layering, --set overrides, errors that name the key and the file."""
import pytest

from genrec.config import load_config, parse_override
from genrec.errors import ConfigError


def test_defaults_and_overrides(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text("train:\n  lr: 1e-3\n  epochs: 3\ndata:\n  ks: 1\n".replace("  ks: 1\n", "  kcore: 5\n"))
    cfg = load_config([str(f)], ["train.epochs=7", "eval.ks=[1, 5]", "data.text_template={title}!"])
    assert cfg.train.lr == pytest.approx(1e-3) and cfg.train.epochs == 7
    assert cfg.eval.ks == [1, 5] and cfg.data.kcore == 5
    assert cfg.data.text_template == "{title}!"


def test_include(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  epochs: 2\n  lr: 0.5\n")
    (tmp_path / "run.yaml").write_text("include: base.yaml\ntrain:\n  epochs: 9\n")
    cfg = load_config([str(tmp_path / "run.yaml")])
    assert cfg.train.epochs == 9 and cfg.train.lr == 0.5


@pytest.mark.parametrize("override,needle", [
    ("data.nope=1", "data.nope"),
    ("train.epochs=abc", "train.epochs"),
    ("run.family=zzz", "run.family"),
    ("eval.ks=[a]", "eval.ks[0]"),
    ("train.progress=3", "train.progress"),
    ("nosuchsection.x=1", "nosuchsection"),
    ("train.checkpoint_minutes=-1", "train.checkpoint_minutes"),
    ("run.threads=-2", "run.threads"),
])
def test_bad_override_names_key(override, needle):
    with pytest.raises(ConfigError) as e:
        load_config([], [override])
    assert needle in str(e.value)


def test_bad_file_names_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("cf:\n  dimm: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config([str(f)])
    assert "bad.yaml" in str(e.value) and "cf.dimm" in str(e.value)
    with pytest.raises(ConfigError, match="not found"):
        load_config([str(tmp_path / "missing.yaml")])
    (tmp_path / "broken.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config([str(tmp_path / "broken.yaml")])


def test_parse_override_needs_equals():
    with pytest.raises(ConfigError):
        parse_override("train.lr")
    assert parse_override("a.b=true") == {"a": {"b": True}}


def test_run_id_depends_on_result_settings_only():
    from genrec.identity import run_id

    a = load_config([], ["run.output_dir=x"])
    b = load_config([], ["run.output_dir=y", "train.progress=false", "encoder.threads=1", "train.checkpoint_minutes=5",
                         "run.threads=1"])
    c = load_config([], ["train.lr=0.5"])
    assert run_id(a) == run_id(b) != run_id(c)
    assert run_id(load_config([], ["run.seed=1"])) != run_id(a)


def test_yaml_no_is_the_literal_no():
    assert load_config([], ["train.mixed_precision=no"]).train.mixed_precision == "no"


def test_accelerators_with_different_precision_in_one_process():
    import torch

    from genrec.train import make_accelerator

    for mp in ("no", "bf16", "no"):
        acc = make_accelerator(load_config([], [f"train.mixed_precision={mp}"]).train, torch.device("cpu"))
        assert acc.mixed_precision == mp
