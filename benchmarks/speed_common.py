"""Shared pieces of benchmarks/speed.py: the bench context (device, sizes, rows), timers, peak memory, data.

Timing: warm-up calls, then the median of `repeats` calls; CUDA events on a GPU (they include host-side
gaps, so Python overhead counts), time.perf_counter on the CPU. Peak memory: on CUDA the peak allocated
above what was allocated before the call; not measured on the CPU.
"""
from __future__ import annotations

import logging
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

log = logging.getLogger("genrec.speed")
COLUMNS = ["section", "case", "ours", "reference", "unit", "ratio", "precision", "device", "note"]
# units where a larger number is better; every other unit (s, MB, ...) is better when smaller
HIGHER_IS_BETTER = {"users/s", "seq/s", "tokens/s", "texts/s", "TFLOP/s", "MFU %", "items/s",
                    "frac identical", "mean overlap"}


@dataclass
class Row:
    section: str
    case: str
    ours: float | None
    reference: float | None
    unit: str
    ratio: float | None
    device: str
    note: str = ""
    precision: str = ""  # what ours computed in (speed.py fills it from the train loops a section ran)

    def as_list(self) -> list:
        return [self.section, self.case, self.ours, self.reference, self.unit, self.ratio, self.precision, self.device,
                self.note]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"


@dataclass
class Bench:
    """Everything a section needs: the device, quick/full sizes, the timer and the rows it adds."""
    device: torch.device
    quick: bool = False
    repeats: int = 3
    warmup: int = 1
    seed: int = 0
    llm: str = "tiny"  # "tiny" (random Llama built in code) or a local folder / resolver short name
    workdir: Path = Path("/tmp/genrec-speed")
    rows: list[Row] = field(default_factory=list)
    profile_dir: Path | None = None  # --profile: torch.profiler op tables of the training steps go here
    profiles: list[str] = field(default_factory=list)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def device_name(self) -> str:
        if self.cuda:
            return torch.cuda.get_device_name(self.device)
        return f"cpu ({cpu_name()}, {torch.get_num_threads()} threads)"

    @property
    def device_slug(self) -> str:
        if not self.cuda:
            return "cpu"
        return re.sub(r"[^a-z0-9]+", "_", self.device_name.lower()).strip("_")

    def pick(self, quick, cpu, cuda):
        """Size for the current mode: quick (tests), full on the CPU, full on CUDA."""
        return quick if self.quick else (cuda if self.cuda else cpu)

    def add(self, section: str, case: str, ours, reference, unit: str, note: str = "", precision: str = "") -> Row:
        """Append a row; ratio = how many times better ours is (speed-up, memory saved); >1 = ours better.
        `precision`: what ours ran in, when the section knows it (else speed.py fills it in)."""
        ratio = None
        if ours is not None and reference is not None and ours > 0 and reference > 0:
            ratio = ours / reference if unit in HIGHER_IS_BETTER else reference / ours
        r = Row(section, case, _round(ours), _round(reference), unit, _round(ratio), self.device_name, note, precision)
        self.rows.append(r)
        log.info("%s | %s | ours %s | ref %s %s | x%s %s", section, case, r.ours, r.reference, unit, r.ratio, note)
        return r

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def time(self, fn: Callable[[], object], repeats: int | None = None, warmup: int | None = None):
        """(median seconds of fn(), last result)."""
        out = None
        for _ in range(self.warmup if warmup is None else warmup):
            out = fn()
        times = []
        for _ in range(max(1, self.repeats if repeats is None else repeats)):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                self.sync()
                start.record()
                out = fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - t0)
        return statistics.median(times), out

    def peak_mb(self, fn: Callable[[], object]):
        """(result of fn(), peak CUDA memory in MB above what was allocated before the call). On the CPU
        (None): the process RSS is no per-call measure (the allocator keeps and reuses freed memory)."""
        if self.cuda:
            self.sync()
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
            out = fn()
            self.sync()
            return out, (torch.cuda.max_memory_allocated(self.device) - base) / 2**20
        return fn(), None


def _round(x):
    if x is None or not isinstance(x, (int, float, np.floating, np.integer)):
        return x
    x = float(x)
    if x == 0 or not np.isfinite(x):
        return x
    digits = max(0, 3 - int(np.floor(np.log10(abs(x)))))
    return round(x, digits)


# ----------------------------------------------------------------------------- data


@dataclass
class Data:
    n_items: int
    split: object  # genrec.data.dataset.Split
    titles: list[str]
    texts: list[str]
    what: str  # "ML-1M" or what stood in for it


_DATA: dict = {}


def ml1m_like(bench: Bench) -> Data:
    """Real ML-1M when it loads offline (full runs), else a synthetic catalogue of the same shape (quick: a
    tiny one, seeded). Titles / texts come from the data (or are made up). Cached per process."""
    key = (bench.quick, bench.seed)
    if key not in _DATA:
        _DATA[key] = _load(bench)
    return _DATA[key]


def _load(bench: Bench) -> Data:
    from genrec.data.dataset import EvalSet, Split

    if not bench.quick:
        try:
            from genrec.config import load_config
            from genrec.data import load_data, split_data

            cfg = load_config([], ["data.source=ml-1m", "data.title_template={title} ({year})",
                                   "data.text_template={title} ({year}). Genres: {genres}"])
            data = load_data(cfg.data)
            return Data(data.n_items, split_data(data, cfg.data), list(data.item_titles), list(data.item_text),
                        "ML-1M")
        except Exception as e:  # noqa: BLE001 - no local copy (e.g. a GPU box without network)
            packed = _load_pack()
            if packed is not None:
                log.warning("ML-1M not available (%s); using the packed index sequences %s", e, packed.what)
                return packed
            log.warning("ML-1M not available (%s); using a synthetic catalogue of the same shape", e)
    n_users, n_items, mean_len = (200, 300, 20) if bench.quick else (6040, 3706, 165)
    rng = np.random.default_rng(bench.seed)
    lens = np.clip(rng.lognormal(np.log(mean_len) - 0.5, 1.0, n_users).astype(np.int64), 20 if not bench.quick
                   else 5, n_items)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pop /= pop.sum()
    seqs = [rng.choice(n_items, size=int(n), replace=False, p=pop) for n in lens]
    users = np.arange(n_users, dtype=np.int64)
    split = Split("loo", [s[:-2] for s in seqs],
                  EvalSet(users, [s[:-2] for s in seqs], np.array([s[-2] for s in seqs])),
                  EvalSet(users.copy(), [s[:-1] for s in seqs], np.array([s[-1] for s in seqs])))
    colours = ["red", "green", "blue", "amber", "violet", "silver", "olive", "teal"]
    kinds = ["lamp", "novel", "guitar", "kettle", "jacket", "camera", "puzzle", "tent"]
    titles = [f"{colours[i % 8]} {kinds[(i // 8) % 8]} " + " ".join(["deluxe"] * (i % 5)) + f" no {i}"
              for i in range(n_items)]
    what = "tiny synthetic" if bench.quick else "synthetic ML-1M shape (6040 x 3706, ~1M events)"
    return Data(n_items, split, titles, [t + ". Genres: synthetic" for t in titles], what)


def _load_pack() -> Data | None:
    """ML-1M from benchmarks/gpu_pack (or $GENREC_ML1M_PACK): the real index sequences and split, placeholder
    titles (the pack holds no text); None when there is no pack."""
    import os

    path = Path(os.environ.get("GENREC_ML1M_PACK") or Path(__file__).resolve().parent / "gpu_pack" / "ml-1m.npz")
    if not path.is_file():
        return None
    from genrec.config import load_config
    from genrec.data import load_data, split_data

    cfg = load_config([], ["data.source=ml-1m", f"data.path={path}"])
    data = load_data(cfg.data)
    return Data(data.n_items, split_data(data, cfg.data), list(data.item_titles), list(data.item_text),
                f"ML-1M (packed index sequences {path.name}, placeholder titles)")


def genrec_run_train_time(prefix: list[str], files: list[str], sets: list[str], out: Path,
                          env: dict | None = None) -> float:
    """train_time_s of one `genrec run` in a fresh process: `prefix` (the interpreter and how it reaches
    genrec.cli, ending before "run"), config `files` (relative to the repo) and --set `sets`, output under out."""
    return float(genrec_run_row(prefix, files, sets, out, env)["train_time_s"])


def genrec_run_row(prefix: list[str], files: list[str], sets: list[str], out: Path,
                   env: dict | None = None) -> dict:
    """The leaderboard row (str values) of one `genrec run` in a fresh process; arguments as genrec_run_train_time."""
    import csv
    import os
    import subprocess

    repo = Path(__file__).resolve().parent.parent
    cmd = prefix + ["run", "--leaderboard", str(out / "rows.csv")]
    cmd += [a for f in files for a in ("-c", str(repo / f))]
    cmd += [a for s in sets + [f"run.output_dir={out}"] for a in ("--set", s)]
    proc = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True, cwd=repo)
    if proc.returncode != 0:
        raise RuntimeError(f"genrec run {' '.join(sets)} failed: {proc.stderr.strip()[-500:]}")
    with open(out / "rows.csv", newline="") as f:
        return list(csv.DictReader(f))[-1]
