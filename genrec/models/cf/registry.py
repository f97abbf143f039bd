"""Name -> class registry of the CF models (unique lowercase names, no if/elif chains)."""
from __future__ import annotations

import importlib
import re

from genrec.errors import ConfigError

MODELS: dict[str, type] = {}
_BUILTIN = ("mf", "neumf", "lightgcn", "sgl", "sasrec")  # modules under genrec.models.cf that register


def register(name: str, cls: type) -> type:
    """Register `cls` under `name` (lowercase letters, digits, underscores; unique)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"CF model name {name!r} must be lowercase letters, digits and underscores")
    if name in MODELS and MODELS[name] is not cls:
        raise ValueError(f"CF model {name!r} is already registered to {MODELS[name].__name__}")
    MODELS[name] = cls
    cls.name = name
    return cls


def _load_builtin() -> None:
    for mod in _BUILTIN:
        importlib.import_module(f"genrec.models.cf.{mod}")


def available() -> list[str]:
    _load_builtin()
    return sorted(MODELS)


def get_model_class(name: str) -> type:
    _load_builtin()
    if name not in MODELS:
        raise ConfigError(f"run.model: unknown CF model {name!r} (known: {', '.join(sorted(MODELS))})")
    return MODELS[name]
