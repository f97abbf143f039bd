"""Families as registered plugins: the `Family` interface, the result types and the registry.

A family is one kind of recommender (baselines, CF, SID, LLM, or one of your own). It declares
- `name`: the value of `run.family` that selects it;
- `sections`: the config sections it owns, YAML key -> class (a dataclass, or a class whose
  annotated `__init__` keywords are the keys, e.g. a transformers `PretrainedConfig`);
- `models`: the `run.model` names it accepts (empty = any);
- `axis_columns` / `size_axes` / `numeric_axes`: the leaderboard columns it fills and how they plot;
and implements `check(cfg)` (raise ConfigError on a bad setting), `run(ctx) -> FamilyResult` and
`axes(cfg) -> dict` (its axis columns for one config), and optionally `load(run_dir, cfg)` (the trained
model back from a run folder, for genrec.inference.load_run).

`register_family(MyFamily())` adds one from user code; `Config`, the pipeline, the leaderboard
columns, the curve axes and sweep validation all read this registry. The built-in families register
themselves when their modules are imported; `all_families()` imports them on first use.

This module imports nothing from genrec but errors, so every layer may use it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrec.errors import ConfigError

BUILTIN_MODULES = ("genrec.models.baselines", "genrec.models.cf.family", "genrec.models.sid.family",
                   "genrec.models.llm.family")


@dataclass
class RunContext:
    cfg: Any  # genrec.config.Config
    data: Any  # genrec.data.RecData
    split: Any  # genrec.data.Split
    run_dir: Path
    device: Any  # torch.device


@dataclass
class FamilyResult:
    model: object  # has score(users, histories) or recommend(users, histories, k, exclude=None)
    params: dict = field(default_factory=dict)  # params_total / params_non_embedding / params_trainable
    extra: dict = field(default_factory=dict)  # tokenizer stats, train history, ... (into the row)
    train_time_s: float = 0.0


class Family:
    name: str = ""
    sections: dict[str, type] = {}
    models: tuple[str, ...] = ()
    axis_columns: tuple[str, ...] = ()
    size_axes: frozenset[str] = frozenset()
    numeric_axes: frozenset[str] = frozenset()

    def check(self, cfg) -> None:
        """Validate a resolved config before anything runs; the default checks `run.model`."""
        if self.models and cfg.run.model not in self.models:
            raise ConfigError(f"run.model: unknown {self.name} model {cfg.run.model!r} "
                              f"(known: {', '.join(self.models)})")

    def run(self, ctx: RunContext) -> FamilyResult:
        raise NotImplementedError

    def axes(self, cfg) -> dict:
        return {}

    def load(self, run_dir: Path, cfg) -> object:
        """Optional: rebuild the trained model of a run folder (the folder holding the family's saved model;
        cfg = its config.yaml) without the training data, as a score or recommend model (see FamilyResult).
        genrec.inference.load_run dispatches here; a family that does not override it cannot be loaded."""
        raise ConfigError(f"family {self.name!r} cannot load a saved run: it implements no "
                          f"load(run_dir, cfg) method (genrec.family.Family.load)")


_REGISTRY: dict[str, Family] = {}
_loaded = False


def register_family(family: Family | type, replace: bool = False) -> Family:
    """Add a family (an instance or a class with a no-argument constructor); returns the instance."""
    fam = family() if isinstance(family, type) else family
    if not fam.name or fam.name != fam.name.lower():
        raise ValueError(f"family name must be a non-empty lowercase string, got {fam.name!r}")
    if fam.name in _REGISTRY and not replace and type(_REGISTRY[fam.name]) is not type(fam):
        raise ValueError(f"family {fam.name!r} is already registered ({type(_REGISTRY[fam.name]).__name__})")
    owners = {s: f.name for f in _REGISTRY.values() if f.name != fam.name for s in f.sections}
    clash = [s for s in fam.sections if s in owners and owners[s] != fam.name]
    if clash:
        raise ValueError(f"family {fam.name!r}: config section {clash[0]!r} belongs to family {owners[clash[0]]!r}")
    _REGISTRY[fam.name] = fam
    return fam


def unregister_family(name: str) -> None:
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in BUILTIN_MODULES:
            importlib.import_module(mod)


def all_families() -> dict[str, Family]:
    _load_builtins()
    return dict(_REGISTRY)


def get_family(name: str) -> Family:
    fams = all_families()
    if name not in fams:
        raise ConfigError(f"run.family: unknown family {name!r} (known: {', '.join(fams)})")
    return fams[name]


def config_sections() -> dict[str, type]:
    """Every registered family's config sections, YAML key -> class."""
    return {s: cls for f in all_families().values() for s, cls in f.sections.items()}


def axis_columns() -> list[str]:
    """Leaderboard axis columns of every registered family, in registration order, without repeats."""
    out: list[str] = []
    for f in all_families().values():
        out += [c for c in f.axis_columns if c not in out]
    return out


def size_axes() -> set[str]:
    return {c for f in all_families().values() for c in f.size_axes}


def numeric_axes() -> set[str]:
    return {c for f in all_families().values() for c in f.numeric_axes}
