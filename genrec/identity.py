"""Config identity: which settings a result depends on, and the ids that name runs and folders.

- `result_settings(cfg)`: the config without NOT_RESULT_KEYS (paths, labels, speed knobs); the one
  identity that run ids, run folders and curve grouping all use.
- `run_id(cfg, fp)`: a leaderboard row's identity (training + evaluation settings + data content).
- `train_id(cfg, fp)`: the run folder's name: run_id without the evaluation-only settings, so a
  changed `eval.*` re-evaluates the trained model instead of training again.
Both are hashes of the difference from the defaults, so a new config field at its default leaves
every existing id unchanged.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

from genrec.config import Config, to_dict


# Settings that do not change what a result means (paths, labels, speed knobs): left out of every config identity.
# run.device and run.threads can move a float's last digits, which grow over training; rows record both.
NOT_RESULT_KEYS = {"run": ("output_dir", "leaderboard", "name", "device", "threads"),
                   "train": ("progress", "num_workers", "trackers", "log_every", "checkpoint_minutes"),
                   "encoder": ("device", "threads", "batch_size")}


def result_settings(cfg: Config | dict, drop_seed: bool = False) -> dict:
    """The config without NOT_RESULT_KEYS (and without run.seed when asked): what a result depends on."""
    d = to_dict(cfg) if isinstance(cfg, Config) else json_copy(cfg)
    for section, keys in NOT_RESULT_KEYS.items():
        for k in keys + (("seed",) if drop_seed and section == "run" else ()):
            d.get(section, {}).pop(k, None)
    return d


def json_copy(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


def _diff(d: dict, base: dict) -> dict:
    out = {}
    for k, v in d.items():
        b = base.get(k, object())
        if isinstance(v, dict) and isinstance(b, dict):
            sub = _diff(v, b)
            if sub:
                out[k] = sub
        elif v != b:
            out[k] = v
    return out


# Settings that change how a trained model is evaluated, not the model: left out of the training identity
# (the run folder), so `genrec eval` and a changed eval.max_users reuse the trained model.
EVAL_ONLY_KEYS = {"eval": None, "decode": ("batch_size",)}  # None = the whole section


def train_id(cfg: Config, data_fingerprint: str = "") -> str:
    """The training identity: run_id without the evaluation settings; names the run folder."""
    def strip(d: dict) -> dict:
        for section, keys in EVAL_ONLY_KEYS.items():
            if keys is None:
                d.pop(section, None)
            else:
                for k in keys:
                    d.get(section, {}).pop(k, None)
        return d

    d = _diff(strip(result_settings(cfg)), strip(result_settings(Config())))
    if data_fingerprint:
        d["_data_fingerprint"] = data_fingerprint
    return config_hash(d)


def run_id(cfg: Config, data_fingerprint: str = "") -> str:
    """Hash of the settings that change the result, taken as their difference from the defaults,
    and of the data's content fingerprint when given (edited data never resumes an old model).

    Output paths, labels and speed knobs are left out, and a newly added config field (at its
    default) leaves every existing run id unchanged.
    """
    d = _diff(result_settings(cfg), result_settings(Config()))
    if data_fingerprint:
        d["_data_fingerprint"] = data_fingerprint
    return config_hash(d)


def config_hash(cfg: Config | dict, keys: list[str] | None = None) -> str:
    """Stable short hash of (part of) a resolved config."""
    d = to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    if keys is not None:
        d = {k: d[k] for k in keys}
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def flatten_config(d: dict, prefix: str = "") -> dict:
    """{'train': {'lr': 1e-3}} -> {'train.lr': 1e-3}; lists and None become strings (tracker-safe,
    hashable values: run trackers' hyper-parameters, and the settings plot lines compare)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_config(v, key + "."))
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = str(v)
    return out
