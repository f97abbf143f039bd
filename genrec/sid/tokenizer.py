"""SIDTokenizer: the item <-> semantic-ID table, its statistics, and the quantizer that produced it.

A tokenizer is a folder (save_pretrained / from_pretrained round-trips exactly):
    config.json          format, quantizer type, the SIDConfig, seed, encoder id, embedding cache key,
                         vocab sizes, n_items
    codes.safetensors    codes [n_items, n_levels] (with the disambiguation level) and raw_codes [n_items, levels]
    quantizer/           RQ-VAE: transformers save_pretrained folder; rq_kmeans: codebooks.safetensors
    stats.json           collision rate, codebook utilisation/perplexity, reconstruction error, train time
    tokenizer_card.md    human-readable summary

Entry points: `train_tokenizer(embeddings, sid_cfg, seed, encoder_id)` trains one;
`get_tokenizer(embeddings, sid_cfg, seed, encoder_id, cache_key)` is the cached stage (or loads
`sid_cfg.tokenizer_path`); `tokenizer_for(data, cfg)` encodes the items and calls it with the
shared encoder id (the SID family, the LLM sid_tokens variant and `genrec tokenize` go through it).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from genrec.errors import ConfigError, DataError
from genrec.hub import HubMixin, local_folder
from genrec.sid.config import SIDConfig
from genrec.sid.table import code_stats, collision_groups, radix_keys

log = logging.getLogger("genrec")

FORMAT = "genrec-sid-tokenizer"
VERSION = 1


class SIDTokenizer(HubMixin):
    """Holds codes [n_items, n_levels] (int64), vocab sizes per level, stats, and the fitted quantizer.

    `codes` include the disambiguation level when `disambiguate` is on (always appended then, 0 for items
    whose tuple is unique), so `n_levels == levels + 1` and item <-> SID is a bijection.
    """

    def __init__(self, raw_codes: np.ndarray, quantizer, sid_cfg: SIDConfig, seed: int = 0, stats: dict | None = None,
                 encoder_id: str = "", cache_key: str = "", allow_collisions: bool = False):
        raw = np.ascontiguousarray(raw_codes, dtype=np.int64)
        if raw.ndim != 2 or raw.shape[1] != sid_cfg.levels:
            raise DataError(f"raw codes: expected [n_items, {sid_cfg.levels}], got {raw.shape}")
        self.raw_codes = raw
        self.quantizer = quantizer
        self.sid_config = sid_cfg
        self.seed = int(seed)
        self.encoder_id = encoder_id
        self.cache_key = cache_key
        self.allow_collisions = bool(allow_collisions)
        sizes, rank = collision_groups(raw)
        self.stats = dict(stats) if stats is not None else code_stats(raw, sid_cfg.codebook_size)
        base = [int(sid_cfg.codebook_size)] * sid_cfg.levels
        if sid_cfg.disambiguate:
            self.codes = np.concatenate([raw, rank[:, None]], axis=1)
            self.vocab_sizes = base + [int(max(sizes.max(), 1)) if len(sizes) else 1]
        else:
            if len(sizes) and sizes.max() > 1 and not allow_collisions:
                raise ConfigError(
                    f"sid.disambiguate=false but {int((sizes > 1).sum())} of {len(raw)} items share a SID with "
                    f"another item (max group {int(sizes.max())}); set sid.disambiguate=true or accept collisions "
                    f"(allow_collisions=True)")
            self.codes = raw.copy()
            self.vocab_sizes = base
        self._keys = radix_keys(self.codes, self.vocab_sizes)
        self._key_order = np.argsort(self._keys, kind="stable")
        self._sorted_keys = self._keys[self._key_order]

    # ------------------------------------------------------------------ table
    @property
    def n_items(self) -> int:
        return int(len(self.codes))

    @property
    def n_levels(self) -> int:
        return int(self.codes.shape[1])

    @property
    def levels(self) -> int:
        """Quantizer levels (without the disambiguation level)."""
        return int(self.sid_config.levels)

    @property
    def quantizer_type(self) -> str:
        return self.sid_config.quantizer

    def item_to_sid(self, items) -> np.ndarray:
        """Item indices [B] -> codes [B, n_levels]."""
        return self.codes[np.asarray(items, dtype=np.int64)]

    def sid_to_item(self, codes) -> np.ndarray:
        """Codes [B, n_levels] -> item indices [B] (-1 where no item has that SID; vectorised lookup).

        With collisions allowed (disambiguate off), a shared SID maps to the lowest item index.
        """
        keys = radix_keys(np.asarray(codes).reshape(-1, self.n_levels), self.vocab_sizes)
        pos = np.clip(np.searchsorted(self._sorted_keys, keys, side="left"), 0, max(self.n_items - 1, 0))
        hit = (keys >= 0) & (self._sorted_keys[pos] == keys) if self.n_items else np.zeros(len(keys), bool)
        return np.where(hit, self._key_order[pos], -1).astype(np.int64)

    # ------------------------------------------------------------------ quantizer
    def encode(self, embeddings: np.ndarray) -> np.ndarray:
        """Embeddings [n, d] -> quantizer codes int64 [n, levels].

        No disambiguation level: an unseen item has no collision group, so the result has `levels`
        columns, not `n_levels`; it may equal the tuple of a known item. For known items it equals
        `tok.raw_codes` (== `tok.codes[:, :levels]`).
        """
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim != 2:
            raise DataError(f"encode: expected embeddings [n, d], got shape {x.shape}")
        if self.quantizer_type == "rqvae":
            if x.shape[1] != self.quantizer.config.input_dim:
                raise DataError(f"encode: expected {self.quantizer.config.input_dim}-d embeddings, got {x.shape[1]}")
            return self.quantizer.encode_codes(x)
        return self.quantizer.encode(x)

    def reconstruct(self, codes: np.ndarray) -> np.ndarray:
        """Quantizer codes [n, levels] (extra columns ignored) -> reconstructed embeddings [n, d]."""
        c = np.asarray(codes, dtype=np.int64)[:, : self.levels]
        if self.quantizer_type == "rqvae":
            return self.quantizer.decode_codes(c)
        return self.quantizer.decode(c)

    # ------------------------------------------------------------------ persistence
    def to_config(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "quantizer": self.quantizer_type,
                "sid_config": dataclasses.asdict(self.sid_config), "seed": self.seed,
                "encoder_id": self.encoder_id, "cache_key": self.cache_key, "n_items": self.n_items,
                "levels": self.levels, "n_levels": self.n_levels, "vocab_sizes": list(self.vocab_sizes),
                "allow_collisions": self.allow_collisions}

    def save_pretrained(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(self.to_config(), indent=2) + "\n")
        save_file({"codes": np.ascontiguousarray(self.codes), "raw_codes": self.raw_codes},
                  str(folder / "codes.safetensors"))
        self.quantizer.save_pretrained(folder / "quantizer")
        (folder / "stats.json").write_text(json.dumps(self.stats, indent=2) + "\n")
        (folder / "tokenizer_card.md").write_text(self._card())
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "SIDTokenizer":
        """Load a saved folder; a missing, truncated or inconsistent file is a one-line DataError naming it."""
        from genrec.config import from_dict

        is_repo_id = not Path(folder).exists() and str(folder).count("/") == 1  # "owner/name" on the Hub
        folder = local_folder(folder) if is_repo_id else Path(folder)
        if not (folder / "config.json").is_file():
            raise DataError(f"{folder}: not a SID tokenizer folder (no config.json)")
        cfg = _read_part(folder / "config.json", lambda p: json.loads(p.read_text()))
        stats = _read_part(folder / "stats.json", lambda p: json.loads(p.read_text()))
        arrays = _read_part(folder / "codes.safetensors", lambda p: load_file(str(p)))
        if cfg.get("format") != FORMAT:
            raise DataError(f"{folder}/config.json: format {cfg.get('format')!r} is not {FORMAT!r}")
        if int(cfg.get("version", 0)) > VERSION:
            raise DataError(f"{folder}: tokenizer version {cfg['version']} is newer than this genrec ({VERSION})")
        if not {"codes", "raw_codes"} <= set(arrays):
            raise DataError(f"{folder}/codes.safetensors: lacks codes / raw_codes; {REMEDY}")
        sid_cfg = from_dict(SIDConfig, cfg["sid_config"], "sid")
        quantizer = _read_part(folder / "quantizer", lambda p: _load_quantizer(p, sid_cfg.quantizer))
        tok = cls(arrays["raw_codes"], quantizer, sid_cfg, cfg.get("seed", 0), stats, cfg.get("encoder_id", ""),
                  cfg.get("cache_key", ""), cfg.get("allow_collisions", False))
        if not np.array_equal(tok.codes, arrays["codes"]):
            raise DataError(f"{folder}: codes.safetensors is inconsistent with its raw codes")
        return tok

    def _card(self) -> str:
        s, c = self.stats, self.sid_config
        per = ", ".join(f"{u:.3f}" for u in s.get("codebook_util_per_level", []))
        ppl = ", ".join(f"{p:.1f}" for p in s.get("codebook_perplexity_per_level", []))
        return (
            f"# SID tokenizer: {c.quantizer} {c.levels}x{c.codebook_size}\n\n"
            f"Semantic IDs for {self.n_items} items from `{self.encoder_id or 'unknown encoder'}` embeddings"
            f" (cache key `{self.cache_key or '-'}`), seed {self.seed}.\n\n"
            f"- levels: {self.levels} quantizer + {self.n_levels - self.levels} disambiguation; "
            f"vocab sizes {self.vocab_sizes}\n"
            f"- collision rate before disambiguation: {s.get('collision_rate', 0):.4f} "
            f"(max group {s.get('max_group_size', 0)})\n"
            f"- codebook utilisation per level: {per}\n- codebook perplexity per level: {ppl}\n"
            f"- reconstruction MSE: {s.get('recon_error', float('nan')):.6g}\n"
            f"- training time: {s.get('train_time_s', float('nan')):.1f} s\n\n"
            "Load with `genrec.sid.SIDTokenizer.from_pretrained(folder)`; `tok.codes` is the item -> SID table, "
            "`tok.encode(embeddings)` quantises new items (no disambiguation level).\n\n"
            f"Quantizer settings:\n\n```json\n{json.dumps(dataclasses.asdict(c), indent=2)}\n```\n")

    def model_card(self) -> str:  # README.md of push_to_hub (genrec.hub.HubMixin)
        return self._card()

    def __repr__(self) -> str:
        return (f"SIDTokenizer({self.quantizer_type} {self.levels}x{self.sid_config.codebook_size}, "
                f"{self.n_items} items, vocab_sizes={self.vocab_sizes}, "
                f"collision_rate={self.stats.get('collision_rate', 0):.4f})")


REMEDY = "delete the folder and train it again (genrec tokenize ... --save FOLDER)"


def _read_part(path: Path, read):
    """read(path), with any failure (missing, truncated, not parseable) as one DataError naming the file."""
    try:
        return read(path)
    except DataError as e:
        raise DataError(f"{path}: unreadable ({e}); {REMEDY}") from None
    except Exception as e:  # noqa: BLE001 - safetensors / transformers raise their own types
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: unreadable ({type(e).__name__}: {msg}); {REMEDY}") from None


def _load_quantizer(folder: Path, kind: str):
    if kind == "rqvae":
        from genrec.sid.modeling_rqvae import RQVAEModel

        model = RQVAEModel.from_pretrained(str(folder))
        model.eval()
        return model
    from genrec.sid.rq_kmeans import RQKMeans

    return RQKMeans.from_pretrained(folder)


# ---------------------------------------------------------------------- training


def _check_embeddings(embeddings) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise DataError(f"embeddings: expected a non-empty [n_items, d] array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("embeddings: contain NaN or inf")
    return np.ascontiguousarray(x)


def train_tokenizer(embeddings: np.ndarray, sid_cfg: SIDConfig, seed: int, encoder_id: str = "",
                    cache_key: str = "", allow_collisions: bool = False, progress: bool = True) -> SIDTokenizer:
    """Fit the configured quantizer on item embeddings [n_items, d] and build the SID table."""
    x = _check_embeddings(embeddings)
    if sid_cfg.levels < 1 or sid_cfg.codebook_size < 1:
        raise ConfigError(f"sid.levels / sid.codebook_size: must be >= 1, got {sid_cfg.levels} / "
                          f"{sid_cfg.codebook_size}")
    t0 = time.perf_counter()
    extra: dict = {}
    if sid_cfg.quantizer == "rqvae":
        from genrec.sid.configuration_rqvae import RQVAEConfig
        from genrec.sid.modeling_rqvae import RQVAEModel, fit_rqvae
        from genrec.runtime import resolve_device

        qcfg = RQVAEConfig(input_dim=x.shape[1], hidden_dims=sid_cfg.hidden_dims, latent_dim=sid_cfg.latent_dim,
                           levels=sid_cfg.levels, codebook_size=sid_cfg.codebook_size,
                           commitment_weight=sid_cfg.commitment_weight)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            quantizer = RQVAEModel(qcfg)
            hist = fit_rqvae(quantizer, x, sid_cfg.epochs, sid_cfg.batch_size, sid_cfg.lr, seed,
                             kmeans_init=sid_cfg.kmeans_init, kmeans_iters=sid_cfg.kmeans_iters,
                             dead_code_restart=sid_cfg.dead_code_restart, progress=progress,
                             device=resolve_device(sid_cfg.device))
        raw = quantizer.encode_codes(x)
        recon = quantizer.decode_codes(raw)
        every = max(1, len(hist["recon_loss"]) // 10)
        extra = {"final_loss": hist["loss"][-1] if hist["loss"] else float("nan"),
                 "recon_loss_curve": [float(v) for v in hist["recon_loss"][::every]],  # standardised space
                 "codes_restarted": int(sum(sum(r) for r in hist["restarted"])),
                 "params": int(sum(p.numel() for p in quantizer.parameters()))}
    elif sid_cfg.quantizer == "rq_kmeans":
        from genrec.sid.rq_kmeans import RQKMeans

        quantizer = RQKMeans(sid_cfg.levels, sid_cfg.codebook_size, niter=sid_cfg.kmeans_iters, seed=seed).fit(x)
        raw = quantizer.encode(x)
        recon = quantizer.decode(raw)
        extra = {"params": int(quantizer.codebooks.size)}
    else:
        raise ConfigError(f"sid.quantizer: {sid_cfg.quantizer!r} is not one of ['rqvae', 'rq_kmeans']")
    stats = code_stats(raw, sid_cfg.codebook_size)
    stats["recon_error"] = float(np.mean((recon.astype(np.float64) - x) ** 2))
    stats["input_mse_to_mean"] = float(np.mean((x - x.mean(0)).astype(np.float64) ** 2))  # scale for recon_error
    stats["train_time_s"] = float(time.perf_counter() - t0)
    stats.update({k: float(v) if isinstance(v, float) else v for k, v in extra.items()})
    tok = SIDTokenizer(raw, quantizer, sid_cfg, seed, stats, encoder_id, cache_key, allow_collisions)
    log.info("%r in %.1f s", tok, stats["train_time_s"])
    return tok


def tokenizer_hash(embeddings: np.ndarray, sid_cfg: SIDConfig, seed: int, allow_collisions: bool = False) -> str:
    """Hash of the SIDConfig (minus tokenizer_path), seed and the embeddings' exact bytes and shape."""
    x = _check_embeddings(embeddings)
    cfg = {k: v for k, v in dataclasses.asdict(sid_cfg).items()
           if k != "tokenizer_path" and not (k == "device" and v == "cpu")}  # cpu: the hashes from before the key
    h = hashlib.sha256(json.dumps({"sid": cfg, "seed": int(seed), "version": VERSION,
                                   "allow_collisions": bool(allow_collisions)}, sort_keys=True).encode())
    h.update(str(x.shape).encode())
    h.update(x.tobytes())
    return h.hexdigest()[:16]


def _cached_tokenizer(folder: Path) -> SIDTokenizer | None:
    """The cached tokenizer in `folder`, or None (the damaged folder removed, with a log line) to retrain."""
    if not (folder / "stats.json").is_file():
        return None
    try:
        tok = SIDTokenizer.from_pretrained(folder)
    except (DataError, ConfigError) as e:
        log.warning("SID tokenizer: cached %s is damaged (%s); removing it and training again", folder.name, e)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    log.info("SID tokenizer: cached %s", folder)
    return tok


def get_tokenizer(embeddings: np.ndarray, sid_cfg: SIDConfig, seed: int, encoder_id: str = "",
                  cache_key: str = "", allow_collisions: bool = False, progress: bool = True) -> SIDTokenizer:
    """Cached stage: load `sid_cfg.tokenizer_path` if set, else the cached folder for (config, embeddings),
    else train and cache under `genrec.paths.cache_dir("tokenizers", <quantizer-LxK-hash>)`.
    A damaged cached folder is retrained; a damaged `tokenizer_path` is a DataError naming the file."""
    if sid_cfg.tokenizer_path:
        path = Path(sid_cfg.tokenizer_path)
        if not path.is_dir():
            raise ConfigError(f"sid.tokenizer_path: {path} is not a folder")
        tok = SIDTokenizer.from_pretrained(path)
        if tok.n_items != len(embeddings):
            raise DataError(f"sid.tokenizer_path: {path} has {tok.n_items} items but the data has "
                            f"{len(embeddings)}")
        return tok
    from genrec.paths import cache_dir

    root = cache_dir("tokenizers")
    folder = root / f"{sid_cfg.quantizer}-{sid_cfg.levels}x{sid_cfg.codebook_size}-" \
                    f"{tokenizer_hash(embeddings, sid_cfg, seed, allow_collisions)}"
    cached = _cached_tokenizer(folder)
    if cached is not None:
        return cached
    tok = train_tokenizer(embeddings, sid_cfg, seed, encoder_id, cache_key, allow_collisions, progress)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    tok.save_pretrained(tmp)
    try:
        os.replace(tmp, folder)  # atomic publish; a concurrent writer may have won the race
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("SID tokenizer: saved %s", folder)
    return tok


def tokenizer_for(data, cfg, progress: bool = True, fresh: bool = False) -> tuple[SIDTokenizer, np.ndarray, dict]:
    """The one way a run gets its SID tokenizer: (tokenizer, item embeddings, encoder info).

    Encodes the items with `cfg.encoder` (cached), names the encoder `model_id@revision` (info["encoder_id"])
    and returns the cached stage (get_tokenizer), or a freshly trained tokenizer with fresh=True. Used by
    the SID family, the LLM family's sid_tokens variant and `genrec tokenize`, so all three share one id."""
    from genrec.encoders import encode_items

    emb, info = encode_items(data, cfg.encoder, return_info=True, progress=progress)
    encoder_id = f"{info.get('model_id') or cfg.encoder.name}@{info.get('revision') or '?'}"
    key = Path(str(info["file"])).stem if info.get("file") else ""
    info = {**info, "encoder_id": encoder_id}
    if fresh:
        tok = train_tokenizer(emb, cfg.sid, cfg.run.seed, encoder_id, key, progress=progress)
    else:
        tok = get_tokenizer(emb, cfg.sid, cfg.run.seed, encoder_id, key, progress=progress)
    return tok, emb, info
