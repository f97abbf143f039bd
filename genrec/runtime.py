"""Runtime helpers every layer may use: device, precision, seeding, parameter counts, peak memory.

This module imports nothing from genrec except errors, so any module (data, models, the trainer, the
pipeline) can use it without pulling in the layers above.
"""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' = the first CUDA device when there is one, else the CPU; anything else as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX (native bf16 matmuls); elsewhere bf16 is emulated and slow."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    words = set(flags.split())
    return "avx512_bf16" in words or "amx_bf16" in words


def resolve_precision(requested: str, device: torch.device) -> str:
    """The mixed precision actually used: 'auto' picks bf16 only where the hardware has it.

    CUDA: bf16 when the GPU supports it. CPU: bf16 only with AVX512-BF16 / AMX (on an AVX2-only CPU a
    bf16 matmul is ~60x slower than fp32), else 'no'. An explicit bf16/fp16/no is kept as asked.
    """
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "no"
    return "no"


@contextlib.contextmanager
def cpu_threads(n: int = 0):
    """Run the block with `n` intra-op CPU threads (0: leave the count the process was started with) and
    restore the old count afterwards. On the CPU the thread count changes how reductions are split, so a
    seeded run repeats to the last digit only at the same count: `accelerate launch` starts one thread per
    process, a plain command as many as there are cores. Rows record the count (`extra.cpu_threads`)."""
    old = torch.get_num_threads()
    if n and n != old:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def count_params(model: torch.nn.Module) -> dict:
    """Total, non-embedding and trainable parameter counts; tied embedding tables count once."""
    seen: dict[int, torch.nn.Parameter] = {}
    for p in model.parameters():  # parameters() already yields a tied tensor once
        seen[id(p)] = p
    total = sum(p.numel() for p in seen.values())
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    emb = sum({id(m.weight): m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding)}.values())
    return {"params_total": int(total), "params_non_embedding": int(total - emb),
            "params_trainable": int(trainable)}


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated CUDA memory, or the process's peak resident set size on the CPU (MiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except Exception:  # noqa: BLE001
        return float("nan")


_MALLOC_TUNED = False
MALLOC_MMAP_THRESHOLD = 128 * 2**20  # see tune_cpu_malloc


def tune_cpu_malloc() -> bool:
    """Keep freed memory in the process instead of handing it back to the kernel after every step (glibc only).

    With glibc's defaults each large temporary tensor (tens of MB: a [8192, 1024] batch of embedding rows) is
    mmap'd and unmapped again, and every new page is faulted in and zeroed by the kernel: a d=1024 MF-BPR epoch
    on ML-100K spent more time in the kernel than in torch (benchmarks/RESULTS.md, "Performance on the CPU").
    Raising the mmap and trim thresholds lets malloc reuse those pages. Called by pipeline.run_point (every run: CLI, sweep, Python API);
    GENREC_TUNE_MALLOC=0 turns it off. Returns whether the thresholds were set.
    """
    global _MALLOC_TUNED
    import os
    import sys

    if _MALLOC_TUNED or os.environ.get("GENREC_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return _MALLOC_TUNED
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # malloc.h
        # tensors up to 128 MiB (a [8192, 2048] fp32 batch of rows is 64 MiB) come from the reusable heap; larger
        # ones stay mmap'd: with a 1 GiB threshold, an LLM's variable-size [targets, 262k-vocab] logits (~0.7 GiB
        # a step for Gemma-3) fragmented the heap until the run was killed for memory (22 GiB in 45 steps)
        ok = libc.mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD) == 1
        ok &= libc.mallopt(m_trim_threshold, 2 * MALLOC_MMAP_THRESHOLD) == 1  # give back a free top above 256 MiB
        ok &= libc.mallopt(m_top_pad, 64 * 2**20) == 1
    except (OSError, AttributeError):  # not glibc (musl, macOS): leave the allocator alone
        return False
    _MALLOC_TUNED = bool(ok)
    return _MALLOC_TUNED
