"""Residual k-means quantizer (faiss): level l clusters what levels < l left over.

Same interface as the RQ-VAE: `encode(embeddings) -> codes [n, levels]`, `decode(codes) -> vectors`.
No learned encoder: the codebooks live in the embedding space itself, so reconstruction error is the
plain residual MSE.
"""
from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
from safetensors.numpy import load_file, save_file

from genrec.errors import ConfigError, DataError


class RQKMeans:
    """`levels` codebooks of `codebook_size` centroids each, fitted by seeded `faiss.Kmeans`."""

    def __init__(self, levels: int = 3, codebook_size: int = 256, niter: int = 25, seed: int = 0,
                 codebooks: np.ndarray | None = None):
        if levels < 1 or codebook_size < 1:
            raise ConfigError(f"sid.levels / sid.codebook_size: must be >= 1, got {levels} / {codebook_size}")
        self.levels, self.codebook_size, self.niter, self.seed = int(levels), int(codebook_size), int(niter), int(seed)
        self.codebooks = None if codebooks is None else np.ascontiguousarray(codebooks, dtype=np.float32)

    # ------------------------------------------------------------------ fitting / coding
    def fit(self, embeddings: np.ndarray) -> "RQKMeans":
        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or len(x) < self.codebook_size:
            raise DataError(f"rq_kmeans: need a 2-D array with >= sid.codebook_size={self.codebook_size} rows, "
                            f"got shape {x.shape}")
        books = []
        residual = x.copy()
        for level in range(self.levels):
            km = faiss.Kmeans(x.shape[1], self.codebook_size, niter=self.niter, seed=self.seed + level, min_points_per_centroid=1,
                              verbose=False)
            km.train(residual)
            centers = np.ascontiguousarray(km.centroids, dtype=np.float32)
            books.append(centers)
            residual -= centers[self._assign(residual, centers)]
        self.codebooks = np.stack(books)
        return self

    @staticmethod
    def _assign(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
        index = faiss.IndexFlatL2(centers.shape[1])
        index.add(centers)
        return index.search(np.ascontiguousarray(x, dtype=np.float32), 1)[1][:, 0].astype(np.int64)

    def _check(self) -> np.ndarray:
        if self.codebooks is None:
            raise RuntimeError("RQKMeans: call fit() (or load a fitted one) before encoding")
        return self.codebooks

    def encode(self, embeddings: np.ndarray) -> np.ndarray:
        """Embeddings [n, d] -> codes int64 [n, levels] (nearest centroid at each level, greedily)."""
        books = self._check()
        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != books.shape[2]:
            raise DataError(f"rq_kmeans.encode: expected [n, {books.shape[2]}] embeddings, got {x.shape}")
        residual = x.copy()
        codes = np.zeros((len(x), self.levels), dtype=np.int64)
        for level in range(self.levels):
            codes[:, level] = self._assign(residual, books[level])
            residual -= books[level][codes[:, level]]
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codes [n, levels] -> sum of the chosen centroids [n, d]."""
        books = self._check()
        c = np.asarray(codes, dtype=np.int64)
        return books[np.arange(self.levels), c].sum(1)

    def level_errors(self, embeddings: np.ndarray) -> list[float]:
        """Residual MSE after each level (the last one is the reconstruction error)."""
        books = self._check()
        residual = np.asarray(embeddings, dtype=np.float32).copy()
        codes = self.encode(residual)
        out = []
        for level in range(self.levels):
            residual -= books[level][codes[:, level]]
            out.append(float(np.mean(residual.astype(np.float64) ** 2)))
        return out

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"codebooks": self._check()}, str(folder / "codebooks.safetensors"))
        cfg = {"quantizer": "rq_kmeans", "levels": self.levels, "codebook_size": self.codebook_size,
               "niter": self.niter, "seed": self.seed, "dim": int(self.codebooks.shape[2])}
        (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "RQKMeans":
        folder = Path(folder)
        try:
            cfg = json.loads((folder / "config.json").read_text())
            books = load_file(str(folder / "codebooks.safetensors"))["codebooks"]
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"{folder}: not a saved rq_kmeans quantizer ({e})") from None
        return cls(cfg["levels"], cfg["codebook_size"], cfg.get("niter", 25), cfg.get("seed", 0), codebooks=books)
