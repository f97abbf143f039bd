"""Frozen text encoders behind one interface: `TextEncoder(cfg).encode(texts) -> float32 [n, d]`.

- sentence-transformers folders: the model's own pipeline (transformer, pooling, dense/normalize
  modules) when `encoder.pooling` equals the model's pooling mode, else `encoder.pooling` applied to
  its token embeddings;
- causal LMs (any transformers folder): the base model's last hidden state, pooled over the
  attention mask ("mean" leaves out a leading BOS token, whose state is the same for every text;
  "last" = last real token; "cls" = first token).
Then, over the encoded set: centre (subtract the mean), whiten (ZCA: covariance -> identity; implies
centring), L2-normalise — in that order, each optional.
"""
from __future__ import annotations

import contextlib
import logging

import numpy as np

from genrec.encoders.resolve import ResolvedModel, resolve_model
from genrec.errors import ConfigError

log = logging.getLogger("genrec")
POOLINGS = ("mean", "cls", "last")


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only a speed-up
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def postprocess(x: np.ndarray, center: bool = False, whiten: bool = False, normalize: bool = False,
                eps: float = 1e-6) -> np.ndarray:
    """Centre / whiten (ZCA) / L2-normalise the rows of `x` (float32 out)."""
    x = np.asarray(x, dtype=np.float64)
    if center or whiten:
        x = x - x.mean(axis=0, keepdims=True)
    if whiten:
        if len(x) < 2:
            raise ConfigError("encoder.whiten needs at least 2 texts")
        with _one_blas_thread():  # threaded BLAS on a small matrix crawls on a busy CPU (seconds vs ms)
            vals, vecs = np.linalg.eigh(x.T @ x / len(x))
            vals = np.clip(vals, 0.0, None)
            scale = 1.0 / np.sqrt(vals + eps * max(float(vals.max()), 1e-12))
            x = x @ (vecs * scale) @ vecs.T
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x.astype(np.float32)


def pick_device(device: str) -> str:
    import torch

    if device in ("", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pool(hidden, mask, how: str, skip_first=None):
    """Pool [B, T, D] hidden states over a [B, T] mask (right padding). `skip_first`: [B] bool."""
    import torch

    mask = mask.to(hidden.dtype)
    if how == "mean":
        m = mask.clone()
        if skip_first is not None:
            m[:, 0] = torch.where(skip_first & (mask.sum(1) > 1), 0.0, m[:, 0])
        return (hidden * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        idx = (mask.sum(1).long() - 1).clamp(min=0)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]
    raise ConfigError(f"encoder.pooling: {how!r} is not one of {list(POOLINGS)}")


def _st_pooling_mode(model) -> str | None:
    for m in model.modules():
        if type(m).__name__ == "Pooling":
            mode = getattr(m, "pooling_mode", None)
            if mode is None and hasattr(m, "get_pooling_mode_str"):
                mode = m.get_pooling_mode_str()
            mode = {"mean_tokens": "mean", "cls_token": "cls", "lasttoken": "last"}.get(mode, mode)
            return mode if isinstance(mode, str) else None
    return None


class TextEncoder:
    """`TextEncoder(cfg.encoder).encode(texts)`; the model loads on first use."""

    def __init__(self, cfg, resolved: ResolvedModel | None = None, progress: bool = True):
        if cfg.pooling not in POOLINGS:
            raise ConfigError(f"encoder.pooling: {cfg.pooling!r} is not one of {list(POOLINGS)}")
        if cfg.batch_size < 1 or cfg.max_length < 1:
            raise ConfigError("encoder.batch_size and encoder.max_length must be >= 1")
        self.cfg = cfg
        self.resolved = resolved
        self.progress = progress
        self._model = None
        self._tok = None
        self.device = None
        self.batches_run = 0  # forward passes so far (tests check the cache skips the model)

    @property
    def kind(self) -> str:
        return self.model_info.kind

    @property
    def model_info(self) -> ResolvedModel:
        if self.resolved is None:
            self.resolved = resolve_model(self.cfg.name)
        return self.resolved

    def load(self) -> None:
        if self._model is not None:
            return
        import torch

        info = self.model_info
        self.device = pick_device(self.cfg.device)
        if info.kind == "sentence-transformers":
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(info.path), device=self.device, local_files_only=True)
            limit = model.max_seq_length or self.cfg.max_length
            model.max_seq_length = min(self.cfg.max_length, limit)
            self._st_mode = _st_pooling_mode(model)
        else:
            from transformers import AutoModel, AutoTokenizer

            tok = AutoTokenizer.from_pretrained(info.path)
            if tok.pad_token is None:
                if tok.eos_token is None:
                    raise ConfigError(f"encoder.name: tokenizer of {info.model_id} has neither a pad nor an eos token")
                tok.pad_token = tok.eos_token
            tok.padding_side = "right"
            self._tok = tok
            model = AutoModel.from_pretrained(info.path, dtype=torch.float32)
            model.to(self.device)
        model.eval()
        self._model = model

    def _forward(self, batch: list[str]):
        import torch

        if self.kind == "sentence-transformers":
            m = self._model
            feats = m.preprocess(batch) if hasattr(m, "preprocess") else m.tokenize(batch)
            feats = {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in feats.items()}
            out = m(feats)
            if self.cfg.pooling == self._st_mode:
                return out["sentence_embedding"]
            return pool(out["token_embeddings"], out["attention_mask"], self.cfg.pooling)
        enc = self._tok(batch, padding=True, truncation=True, max_length=self.cfg.max_length, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        hidden = self._model(**enc).last_hidden_state
        bos = self._tok.bos_token_id
        skip = (enc["input_ids"][:, 0] == bos) if bos is not None else None
        return pool(hidden, enc["attention_mask"], self.cfg.pooling, skip_first=skip)

    def encode_raw(self, texts: list[str]) -> np.ndarray:
        """Pooled vectors, before centre/whiten/normalise: float32 [n, d]."""
        import torch
        from tqdm.auto import tqdm

        from genrec.runtime import cpu_threads  # imports torch: kept out of import time

        texts = [str(t) for t in texts]
        if not texts:
            raise ConfigError("encoder: nothing to encode (empty text list)")
        self.load()
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch
        bs = self.cfg.batch_size
        chunks = []
        bar = tqdm(range(0, len(texts), bs), desc=f"encode {self.cfg.name}", unit="batch",
                   disable=not self.progress, leave=False)
        # encoder.threads holds while encoding only: the training after it keeps the run's own thread count
        with torch.inference_mode(), cpu_threads(getattr(self.cfg, "threads", 0)):
            for start in bar:
                idx = order[start:start + bs]
                chunks.append(self._forward([texts[i] for i in idx]).float().cpu().numpy())
                self.batches_run += 1
        out = np.empty((len(texts), chunks[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(chunks)
        return out

    def encode(self, texts: list[str]) -> np.ndarray:
        """Pooled, then centred / whitened / normalised over `texts` as `encoder.*` says."""
        c = self.cfg
        return postprocess(self.encode_raw(texts), center=c.center, whiten=c.whiten, normalize=c.normalize)
