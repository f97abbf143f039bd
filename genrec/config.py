"""Typed configuration: one dataclass per stage, YAML files, `--set a.b=value` overrides.

An unknown key or a value of the wrong type raises ConfigError naming the key path and the file.
The core sections (run, data, eval, decode, encoder, train) are defined here; every other section
belongs to a registered family (genrec.family) and is parsed into the class that family declares.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from genrec.errors import ConfigError
from genrec.family import all_families, config_sections


@dataclass
class RunConfig:
    family: str = "baseline"  # a registered family (genrec.family): baseline, cf, sid, llm, or your own
    model: str = "popularity"  # name inside the family (popularity/random, mf_bpr, sasrec, tiger, ...)
    name: str = ""  # free label; the run id is a hash of the resolved config
    seed: int = 0
    output_dir: str = "runs"
    device: str = "auto"  # auto | cpu | cuda | cuda:0 ...
    threads: int = 0  # CPU threads for the run's torch ops (0 = as launched); a run repeats exactly only at one count
    leaderboard: str = "runs/leaderboard.csv"

    def __post_init__(self):
        if self.threads < 0:
            raise ValueError(f"run.threads: must be 0 (as launched) or a positive thread count, got {self.threads}")
        known = all_families()
        if self.family not in known:
            raise ValueError(f"run.family: unknown family {self.family!r} (known: {', '.join(known)})")


@dataclass
class DataConfig:
    source: Literal["ml-100k", "ml-1m", "csv", "parquet", "jsonl", "amazon", "synthetic"] = "ml-100k"
    name: str = ""  # dataset name in rows and logs for csv/parquet/jsonl/amazon ("" = the source)
    path: str = ""  # file (or directory) for csv/parquet/jsonl/amazon sources
    item_path: str = ""  # item-metadata file for csv/parquet/jsonl/amazon sources
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str | None = "timestamp"  # null / "" = no time column (needs order: file)
    order: Literal["time", "file"] = "time"  # file: the row order of the interactions file is the time
    bad_rows: Literal["error", "drop"] = "error"  # bad rows (empty/unreadable/out-of-range time, cut-off line)
    delimiter: str = ""  # CSV field separator ("" = tab for .tsv/.tab, else comma; "tab" = a tab)
    encoding: str = "utf-8"  # text encoding of CSV / JSON Lines files
    rating_col: str = ""  # optional; used only with min_rating
    item_text_cols: list[str] = field(default_factory=lambda: ["title"])
    min_text_share: float = 0.5  # error when fewer items have a text (with an item file; 0 = off)
    min_rating: float = 0.0  # keep interactions with rating >= this (0 = keep all)
    kcore: int = 0  # iterative k-core on users and items (0 = off)
    min_user_interactions: int = 3  # users with fewer are dropped (and counted): LOO needs 3
    dedup: bool = True  # drop exact duplicate (user, item, timestamp) rows (counted)
    split: Literal["loo", "temporal"] = "loo"
    temporal_cut: list[float] = field(default_factory=lambda: [0.8, 0.9])  # time quantiles: valid, test
    max_history: int = 50  # history items fed to sequential models (most recent kept)
    data_fraction: float = 1.0  # share of users kept (the data-size scaling axis)
    fraction_seed: int = 0
    text_template: str = "{title}"  # encoder input: python format string over item columns
    title_template: str = "{title}"  # how titles read in LLM prompts and outputs
    # synthetic source
    n_users: int = 300
    n_items: int = 120
    seq_len: int = 12
    synthetic_seed: int = 0


@dataclass
class EvalConfig:
    ks: list[int] = field(default_factory=lambda: [5, 10, 20, 50])
    exclude_history: bool = True
    exclude_window: int = 0  # with exclude_history: exclude only the last N history items (0 = all)
    batch_size: int = 512
    split: Literal["valid", "test"] = "test"
    max_users: int = 0  # evaluate on the first N users only (0 = all); for reduced CPU runs
    sample_seed: int = -1  # with max_users: a seeded random sample of max_users users, the same for every model
    # (-1 = the first max_users users)


@dataclass
class DecodeConfig:
    """Beam-search settings shared by every generative family (SID and LLM)."""

    num_beams: int = 20  # beams = longest top-K list (max(eval.ks) must be <= num_beams)
    batch_size: int = 64  # users per beam-search call (memory: users x beams x history tokens)
    valid_users: int = 1000  # validation users for early stopping (recall@10 by beam search; 0 = all)


@dataclass
class EncoderConfig:
    name: str = "minilm-l6"  # short name, HF id or local folder
    batch_size: int = 64
    max_length: int = 64
    pooling: Literal["mean", "cls", "last"] = "mean"
    normalize: bool = True
    center: bool = False
    whiten: bool = False
    device: str = "auto"
    threads: int = 0  # CPU threads for the encoder (0 = torch default; 1 is fastest on a busy machine)


@dataclass
class TrainConfig:
    epochs: int = 10
    max_steps: int = 0  # stop after this many optimiser steps (0 = no limit)
    max_time_s: float = 0.0  # stop after the epoch in which training time (validation excluded) reaches this (0 = off)
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_accum: int = 1
    warmup_steps: int = 0
    patience: int = 5  # early stopping on validation recall@10, in evaluations (0 = off)
    eval_every: int = 1  # epochs between validation evaluations
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    grad_clip: float = 1.0
    fused_adam: bool = False  # PyTorch's fused AdamW kernel: same update, other rounding (benchmarks/speed.py --only adam)
    num_workers: int = 0
    checkpoint_every: int = 1  # epochs between resumable checkpoints (0 = off)
    # also checkpoint after any epoch that ends this many minutes after the last checkpoint (0 = off): a
    # long run cut mid-way loses at most about this much; not part of the run identity (resuming is exact)
    checkpoint_minutes: float = 0.0
    progress: bool = True
    include_valid: bool = False  # the validation item is a training target (fixed epochs: needs patience 0)
    refit: bool = False  # after early stopping, retrain on train + validation for the best epoch count
    trackers: list[str] = field(default_factory=lambda: ["tensorboard"])  # tensorboard, wandb, mlflow; [] = off
    log_every: int = 50  # optimiser steps between logged loss / learning-rate scalars (0 = per epoch only)

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"train.epochs must be >= 1, got {self.epochs} (a run trains before it evaluates; "
                             f"to evaluate without training use a baseline family)")
        if self.checkpoint_minutes < 0:
            raise ValueError(f"train.checkpoint_minutes must be >= 0 (0 = off), got {self.checkpoint_minutes}")
        if self.include_valid and self.eval_every != 0:
            raise ValueError("train.include_valid needs train.eval_every: 0 (a fixed epoch budget: the validation "
                             "item is in the training data, so it cannot pick epochs or weights)")
        if self.include_valid and self.refit:
            raise ValueError("train.include_valid and train.refit exclude each other (refit sets include_valid "
                             "itself for its second fit)")


CORE_SECTIONS = ("run", "data", "eval", "decode", "encoder", "train")


@dataclass
class Config:
    """The resolved config: core sections as fields, family sections (cfg.sid, cfg.cf, ...) by name."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sections: dict = field(default_factory=dict, repr=False)  # family sections, YAML key -> object

    def __post_init__(self):
        for name, cls in config_sections().items():
            if name not in self.sections:
                self.sections[name] = cls()

    def __getattr__(self, name: str):
        secs = self.__dict__.get("sections")
        if secs is not None and not name.startswith("__"):
            if name in secs:
                return secs[name]
            cls = config_sections().get(name)  # a family registered after this config was built
            if cls is not None:
                secs[name] = cls()
                return secs[name]
        raise AttributeError(f"config has no section {name!r}")


# ----------------------------------------------------------------------------- machinery


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`; return it (ints widen to float)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for a in args:
            if a is type(None) and value is None:
                return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} is not a {_type_name(tp)}")
    if origin is Literal:
        if isinstance(value, bool):  # YAML 1.1 reads a bare no/off/yes/on as a boolean
            value = next((a for a in args if isinstance(a, str) and yaml.safe_load(a) is value), value)
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads '1e-3' as a string
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def init_fields(cls: type) -> dict[str, Any]:
    """Keys and type hints of a section class: dataclass fields, or the annotated __init__ keywords."""
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls.__init__)
    import inspect

    params = inspect.signature(cls.__init__).parameters
    return {k: hints.get(k, Any) for k, p in params.items()
            if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build section class `cls` from a mapping, rejecting unknown keys and wrong types.

    `where` is the key path of `data` ("" for the root); errors name the full key path. A section
    class that validates in __init__ (ValueError) has its message prefixed with the key path.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    if cls is Config:
        return _config_from_dict(data)
    fields = init_fields(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown key {key!r} (known here: {', '.join(sorted(fields))})")
    kwargs = {k: _coerce(v, fields[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        msg = str(e)
        raise ConfigError(msg if where and msg.startswith(where) else f"{where or cls.__name__}: {msg}") from None


def _config_from_dict(data: dict) -> "Config":
    families = config_sections()
    known = set(CORE_SECTIONS) | set(families)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} (known here: {', '.join(sorted(known))})")
    hints = typing.get_type_hints(Config)
    core = {k: from_dict(hints[k], v, k) for k, v in data.items() if k in CORE_SECTIONS}
    secs = {k: from_dict(families[k], v, k) for k, v in data.items() if k in families}
    return Config(**core, sections=secs)


def to_dict(obj: Any) -> dict:
    """A config (or one section) as plain nested dicts, the form that YAML files and hashes use."""
    if isinstance(obj, Config):
        d = {k: dataclasses.asdict(getattr(obj, k)) for k in CORE_SECTIONS}
        d.update({k: to_dict(v) for k, v in obj.sections.items()})
        return d
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    return {k: _plain(getattr(obj, k)) for k in init_fields(type(obj))}


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_override(text: str) -> dict:
    """'a.b=v' -> {'a': {'b': v}} with v parsed as YAML (so 1, 1e-3, true, [1,2] work)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not p for p in key.split(".")):
        raise ConfigError(f"--set {text!r}: bad key path {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, dict) and any(v is None for v in value.values()):
        value = raw  # a format template such as {title} ({year}), not a YAML mapping
    out: dict = {}
    cur = out
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def read_yaml_mapping(path: str | Path, what: str = "config") -> dict:
    """A YAML file whose top level is a mapping, or a one-line ConfigError naming the file (and line)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(p)
        why = " ".join(x for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x)
        raise ConfigError(f"{where}: not valid YAML ({why or str(e).splitlines()[0]})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    return data


def read_yaml(path: str | Path) -> dict:
    return _resolve_includes(read_yaml_mapping(path), Path(path))


def _resolve_includes(data: dict, path: Path) -> dict:
    """A YAML file may start with `include: [other.yaml, ...]` (paths relative to it)."""
    inc = data.pop("include", None)
    if inc is None:
        return data
    if isinstance(inc, str):
        inc = [inc]
    merged: dict = {}
    for rel in inc:
        merged = deep_merge(merged, read_yaml(path.parent / rel))
    return deep_merge(merged, data)


def build_config(raw: dict, source: str = "config") -> Config:
    try:
        return from_dict(Config, raw)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def load_config(files: list[str] | tuple[str, ...] = (), overrides: list[str] | tuple[str, ...] = (),
                base: dict | None = None) -> Config:
    """Merge YAML files in order, then `--set` overrides; validate into a Config."""
    raw: dict = dict(base or {})
    for f in files:
        layer = read_yaml(f)
        build_config(deep_merge(raw, layer), str(f))  # name the file that brings a bad key
        raw = deep_merge(raw, layer)
    for o in overrides:
        raw = deep_merge(raw, parse_override(o))
        build_config(raw, f"--set {o}")
    return build_config(raw, ", ".join(map(str, files)) or "config")
