"""Where genrec keeps downloaded assets and stage outputs."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$GENREC_CACHE`, else `~/.cache/genrec`. Created on first use."""
    root = Path(os.environ.get("GENREC_CACHE") or Path.home() / ".cache" / "genrec")
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(*parts: str) -> Path:
    p = cache_root().joinpath(*parts)
    p.mkdir(parents=True, exist_ok=True)
    return p
