"""genrec: a benchmark for scaling generative recommendation (SID-based GR, LLM-as-RS, CF baselines)."""
from __future__ import annotations

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("genrec")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0+unknown"
