"""The interface every CF model shares, and the training / scoring / saving machinery.

A model implements `tables()` -> (user table [n_users, D] or None, item table [n_items, D]) with
gradients (LightGCN propagates here), or overrides `user_embeddings` (SASRec encodes histories).
Scores are dot products of transformed vectors, so full ranking is one matrix product (or a faiss
inner-product search). Transform: identity, or per-set L2 normalisation (normalize / adap_tau /
multi-embedding) with the user side scaled by the inverse temperature.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig

from genrec.errors import ConfigError
from genrec.hub import HubMixin
from genrec.models.cf.config import CFConfig
from genrec.models.cf.losses import LOSSES, AdapTau, directspec_penalty, ranking_loss


class CFModel(HubMixin, nn.Module):
    name = ""
    sequential = False  # True: users are represented by their histories (SASRec)
    dot_product = True  # False: score() is not a dot product (NeuMF); faiss does not apply
    supports_multi = False  # multi-embedding implemented

    def __init__(self, cfg: CFConfig, n_users: int, n_items: int, max_len: int = 50, seed: int = 0):
        super().__init__()
        if cfg.loss not in LOSSES:
            raise ConfigError(f"cf.loss: unknown loss {cfg.loss!r} (known: {', '.join(LOSSES)})")
        if cfg.dim < 1 or cfg.num_embeddings < 1 or cfg.dim % cfg.num_embeddings:
            raise ConfigError(f"cf.dim ({cfg.dim}) must be a positive multiple of cf.num_embeddings "
                              f"({cfg.num_embeddings})")
        if cfg.num_embeddings > 1 and not self.supports_multi:
            raise ConfigError(f"cf.num_embeddings > 1 is implemented for mf_bpr only, not {self.name}")
        if cfg.tau <= 0:
            raise ConfigError(f"cf.tau must be > 0, got {cfg.tau}")
        self.cfg = cfg
        self.n_users, self.n_items, self.max_len, self.seed = n_users, n_items, max_len, seed
        self.cosine = cfg.normalize or cfg.adap_tau or cfg.num_embeddings > 1
        self.adap = AdapTau(n_users, cfg.tau, cfg.adap_tau_lambda) if cfg.adap_tau else None
        self._adap_w: torch.Tensor | None = None
        self._cache: tuple | None = None
        self._pairs: tuple[np.ndarray, np.ndarray] | None = None
        self.train_counts: dict = {}  # what fit() trained on, for genrec.compute (FamilyResult.extra)

    # ------------------------------------------------------------------ representation
    def tables(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        raise NotImplementedError

    def _eval_tables(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        if self._cache is None or self.training:
            with torch.no_grad():
                u, i = self.tables()
            u = None if u is None else u.detach().float()
            out = (u, i.detach().float())
            if self.training:
                return out
            self._cache = out
        return self._cache

    def train(self, mode: bool = True):
        self._cache = None
        return super().train(mode)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._cache = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @torch.no_grad()
    def user_embeddings(self, users: torch.Tensor, histories=None) -> torch.Tensor:
        """Raw user vectors [B, D] (before normalisation / temperature)."""
        u, _ = self._eval_tables()
        return u[users.to(u.device)]

    @torch.no_grad()
    def item_embeddings(self) -> torch.Tensor:
        """Raw item vectors [n_items, D] the model scores with (propagated for graph models)."""
        return self._eval_tables()[1]

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Vectors whose dot products are the scores up to the user's temperature: identity, or each
        embedding set L2-normalised and scaled by 1/sqrt(K) (so the dot product is the mean per-set cosine)."""
        if not self.cosine:
            return x
        k = self.cfg.num_embeddings
        if k == 1:
            return F.normalize(x, dim=-1)
        return F.normalize(x.view(*x.shape[:-1], k, -1), dim=-1).flatten(-2) / math.sqrt(k)

    def inv_temp(self, users: torch.Tensor | None) -> torch.Tensor | float:
        """1 for raw dot products; 1/tau for cosine scores; per-user w_u (Adap-tau) while training."""
        if not self.cosine:
            return 1.0
        if self.adap is not None and self.training and self._adap_w is not None and users is not None:
            return self._adap_w.to(users.device)[users]
        return 1.0 / self.cfg.tau

    def pair_dots(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """Score parts of u [B, D] with i [B, D] -> [B] or with i [B, N, D] -> [B, N]; the cosine is computed
        from the raw dot product and the norms (no normalised copies of the big tensors)."""
        if i.dim() == 3:
            u = u[:, None, :]
        if not self.cosine:
            return (u * i).sum(-1)
        k = self.cfg.num_embeddings
        if k > 1:
            u = u.reshape(*u.shape[:-1], k, -1)
            i = i.reshape(*i.shape[:-1], k, -1)
        cos = (u * i).sum(-1) / (u.norm(dim=-1) * i.norm(dim=-1)).clamp_min(1e-8)
        return cos.mean(-1) if k > 1 else cos

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def score(self, users: torch.Tensor, histories) -> torch.Tensor:
        """Scores of every item for each user: Tensor[B, n_items] (higher is better)."""
        iv = self.transform(self.item_embeddings())
        uv = self.transform(self.user_embeddings(users, histories)).to(iv.device)
        return (uv @ iv.T).float() * self.inv_temp(None)

    # ------------------------------------------------------------------ training
    def prepare(self, split) -> None:
        """Set up training data structures (pairs, graph, sequences) from a Split."""
        users, items = split.train_pairs()
        self._pairs = (users, items)

    def on_epoch_start(self, epoch: int, gen: torch.Generator) -> None:
        if self.adap is not None and epoch > 0:
            u, i = self._eval_tables()
            if u is None:
                raise ConfigError(f"cf.adap_tau needs user embeddings; {self.name} has none")
            self.adap.update(u, i, *self._pairs)
        if self.adap is not None:
            self._adap_w = self.adap.w.clone()

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(len(self._pairs[0]) / batch_size)

    def batches(self, epoch: int, batch_size: int):
        """Shuffled (user, positive) pairs with uniform negatives, vectorised per epoch."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        self.on_epoch_start(epoch, gen)
        users = torch.from_numpy(self._pairs[0])
        items = torch.from_numpy(self._pairs[1])
        n = len(users)
        perm = torch.randperm(n, generator=gen)
        c = self.cfg
        shared = c.loss == "sampled_softmax"
        for s in range(0, n, batch_size):
            idx = perm[s:s + batch_size]
            b = {"users": users[idx], "pos": items[idx]}
            if c.loss != "softmax":
                shape = (c.num_negatives,) if shared else (len(idx), c.num_negatives)
                b["neg"] = torch.randint(0, self.n_items, shape, generator=gen)
            yield b

    def forward(self, batch: dict) -> torch.Tensor:
        """Training loss of one batch (forward so DDP wrappers see it)."""
        u_tab, i_tab = self.tables()
        users = batch["users"]
        loss = self.vector_loss(u_tab[users], users, batch["pos"], batch.get("neg"), i_tab)
        return loss + self.extra_loss(batch)

    def vector_loss(self, u_raw, users, pos, neg, i_tab) -> torch.Tensor:
        """Loss of raw user vectors [M, D] against positive items [M] and negatives (per-row [M, N] or
        shared [N]); adds the L2 reg and the DirectSpec penalty on the rows involved."""
        c = self.cfg
        t = self.inv_temp(users)
        t_col = t[:, None] if isinstance(t, torch.Tensor) else t
        p_raw = i_tab[pos]
        s_pos = (self.pair_dots(u_raw, p_raw) * t).float()
        reg_rows = [u_raw, p_raw]
        if c.loss == "softmax":
            per = torch.logsumexp(((self.transform(u_raw) @ self.transform(i_tab).T) * t_col).float(), -1) - s_pos
        else:
            if neg.dim() == 1:
                n_raw = i_tab[neg]  # shared negatives; a negative equal to the positive is masked
                s_neg = ((self.transform(u_raw) @ self.transform(n_raw).T) * t_col).float()
                s_neg = s_neg.masked_fill(neg[None, :] == pos[:, None], float("-inf"))
            else:
                s_neg = (self.row_negative_dots(u_raw, neg, i_tab, reg_rows) * t_col).float()
                if c.loss == "sampled_softmax":  # a negative equal to the positive is not a negative
                    s_neg = s_neg.masked_fill(neg == pos[:, None], float("-inf"))
            per = ranking_loss(s_pos, s_neg, c.loss)
        if self.adap is not None and users is not None and self.training:
            self.adap.record(users, per)
        loss = per.mean()
        if c.reg > 0:
            loss = loss + c.reg * sum((r.float() ** 2).sum(-1).mean() for r in reg_rows) / 2
        if c.directspec:
            loss = loss + c.directspec_weight * sum(
                directspec_penalty(r, c.directspec_plus, c.directspec_tau, c.directspec_rows) for r in reg_rows[:2])
        return loss

    # per-row negatives: score the whole catalogue once and pick the sampled columns when there are at least
    # n_items / CATALOGUE_RATIO negatives per row (one dense matrix product beats gathering [M, N, D] rows
    # and scattering their gradients back; same scores up to rounding: tests/test_cf.py)
    CATALOGUE_RATIO = 32

    def row_negative_dots(self, u_raw, neg, i_tab, reg_rows: list) -> torch.Tensor:
        """Score parts of u_raw [M, D] with the items neg [M, N] -> [M, N]; appends the negatives' rows to
        reg_rows when the L2 term needs them."""
        if neg.shape[1] * self.CATALOGUE_RATIO >= i_tab.shape[0]:
            if self.cfg.reg > 0:
                reg_rows.append(i_tab[neg].reshape(-1, i_tab.shape[-1]))
            return (self.transform(u_raw) @ self.transform(i_tab).T).gather(1, neg)
        n_raw = i_tab[neg]
        reg_rows.append(n_raw.reshape(-1, n_raw.shape[-1]))
        return self.pair_dots(u_raw, n_raw)

    def extra_loss(self, batch: dict) -> torch.Tensor | float:
        return 0.0

    def fit(self, split, train_cfg, run_dir, device: torch.device | None = None, eval_cfg=None,
            validate: bool = True, desc: str = ""):
        """Train with genrec.train.train_loop (early stopping on valid recall@10); returns TrainResult."""
        from genrec.eval.evaluate import evaluate
        from genrec.train import train_loop

        self.prepare(split)
        excl = True if eval_cfg is None else eval_cfg.exclude_history
        bs = 512 if eval_cfg is None else eval_cfg.batch_size
        n_items = self.n_items

        def _validate(model) -> float:
            return evaluate(model, split.valid, n_items, [10], excl, bs)["recall@10"]

        spe = self.steps_per_epoch(train_cfg.batch_size)
        res = train_loop(self, lambda m, b: m(b), lambda ep: self.batches(ep, train_cfg.batch_size), train_cfg,
                         run_dir, validate=_validate if validate and len(split.valid) else None, device=device,
                         steps_per_epoch=spe, desc=desc or self.name,
                         extra_state={"adap_tau": self.adap} if self.adap is not None else None)
        self.train_counts = self.compute_counts(res.steps * max(1, train_cfg.grad_accum), spe)
        self.eval()
        self._cache = None
        return res

    def examples_per_epoch(self) -> tuple[int, float]:
        """(training examples per epoch, mean input length): (user, positive) pairs and length 1, or for a
        sequential model the predicted positions of the trained sequences and their mean input length."""
        if self.sequential and getattr(self, "_rows", None) is not None:
            lens = (self._lens[self._rows] - 1).clamp_min(0).double()
            return int(lens.sum()), float(lens.mean()) if len(lens) else 0.0
        return (len(self._pairs[0]) if self._pairs is not None else 0), 1.0

    def compute_counts(self, batches: int, batches_per_epoch: int) -> dict:
        """The FamilyResult.extra keys genrec.compute reads, for `batches` training batches.

        Dot-product models: train_examples = (user, positive) pairs, each scoring `scored_items` items of
        width `score_dim` (1 + negatives; the catalogue for softmax). Non-dot-product models (NeuMF):
        every scored (user, item) pair goes through the network, so train_examples counts those pairs.
        SASRec adds the attention term (n_layers, context = mean input length, d_attn = dim); graph models
        (an `edge_users` buffer: LightGCN, SGL) the propagation once per batch (SGL: + 2 views)."""
        c = self.cfg
        per_epoch, mean_len = self.examples_per_epoch()
        examples = round(per_epoch * batches / max(1, batches_per_epoch))
        scored = self.n_items if c.loss == "softmax" else 1 + c.num_negatives
        out = {"train_examples": examples, "train_batches": int(batches), "scored_items": scored, "score_dim": c.dim}
        if not self.dot_product:
            out.update(train_examples=examples * scored, scored_items=1)
        if self.sequential:
            out.update(n_layers=c.layers, context=round(mean_len, 3), d_attn=c.dim)
        edges = getattr(self, "edge_users", None)
        if isinstance(edges, torch.Tensor) and len(edges):
            views = 3 if hasattr(self, "_views") and getattr(c, "ssl_weight", 0) else 1
            out.update(graph_steps=int(batches), graph_edges=len(edges), graph_dim=c.dim, graph_layers=c.layers,
                       graph_views=views)
        return out

    # ------------------------------------------------------------------ persistence
    def _config_dict(self) -> dict:
        return {"model_type": MODEL_TYPE, "model": self.name, "n_users": self.n_users, "n_items": self.n_items,
                "max_len": self.max_len, "seed": self.seed, "cf": dataclasses.asdict(self.cfg)}

    def _prepare_load(self, state: dict) -> None:
        """Resize data-dependent buffers (e.g. the graph's edge list) before load_state_dict."""

    def save_pretrained(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(self._config_dict(), indent=2))
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(d / "model.safetensors"))
        return d

    @classmethod
    def from_pretrained(cls, directory: str | Path, **kwargs) -> "CFModel":
        return load_pretrained(directory)

    def model_card(self) -> str:
        cfg = json.dumps(self._config_dict(), indent=2)
        return (f"---\nlibrary_name: genrec\ntags: [recommendation, genrec, {self.name}]\n---\n\n"
                f"# genrec CF model: {self.name}\n\n{self.n_users} users, {self.n_items} items. Load with "
                f"`genrec.models.cf.load_pretrained(folder_or_repo)` or, after `import genrec.models.cf.base`, "
                f"`transformers.AutoModel.from_pretrained(...)`.\n\n```json\n{cfg}\n```\n")


def load_pretrained(directory: str | Path) -> CFModel:
    """Rebuild any registered CF model from a save_pretrained folder (config.json + model.safetensors), a
    local folder or a Hub repo id; folders saved before `model_type` was written load too."""
    from safetensors.torch import load_file

    from genrec.config import from_dict
    from genrec.hub import local_folder
    from genrec.models.cf.registry import get_model_class

    d = local_folder(directory)
    if not (d / "config.json").is_file() or not (d / "model.safetensors").is_file():
        raise ConfigError(f"{d}: not a CF model folder (needs config.json and model.safetensors)")
    meta = json.loads((d / "config.json").read_text())
    cls = get_model_class(meta["model"])
    cfg = from_dict(CFConfig, meta["cf"], "cf")
    model = cls(cfg, meta["n_users"], meta["n_items"], meta["max_len"], meta.get("seed", 0))
    state = load_file(str(d / "model.safetensors"))
    model._prepare_load(state)
    model.load_state_dict(state)
    model.eval()
    return model


MODEL_TYPE = "genrec_cf"


class CFModelConfig(PretrainedConfig):
    """The config.json of a CF model folder: the CF model name, sizes, seed and the `cf` section."""
    model_type = MODEL_TYPE

    def __init__(self, model: str = "", n_users: int = 0, n_items: int = 0, max_len: int = 50, seed: int = 0,
                 cf: dict | None = None, **kwargs):
        self.model, self.n_users, self.n_items, self.max_len, self.seed = model, n_users, n_items, max_len, seed
        self.cf = dict(cf or {})
        super().__init__(**kwargs)


class CFAutoModel:
    """What AutoModel maps genrec_cf to: its from_pretrained gives back the CF model (load_pretrained)."""
    config_class = CFModelConfig

    @classmethod
    def from_pretrained(cls, directory, *args, **kwargs) -> CFModel:
        return load_pretrained(directory)


AutoConfig.register(MODEL_TYPE, CFModelConfig, exist_ok=True)
AutoModel.register(CFModelConfig, CFAutoModel, exist_ok=True)


class FaissRanker:
    """Top-K ranking through a faiss exact inner-product index over a model's item vectors.

    Exposes only `recommend`, so evaluate() ranks with it; it searches K + the longest excluded list,
    drops the excluded items (the evaluator's ranking rule) and returns K real, unseen items.
    """

    def __init__(self, model: CFModel):
        import faiss

        if not model.dot_product:
            raise ConfigError(f"cf.faiss: {model.name} does not score by inner product")
        self.model = model
        iv = model.transform(model.item_embeddings()).float().cpu().numpy()
        self.index = faiss.IndexFlatIP(iv.shape[1])
        self.index.add(np.ascontiguousarray(iv))

    @torch.no_grad()
    def recommend(self, users: torch.Tensor, histories, k: int, exclude=None) -> torch.Tensor:
        uv = self.model.transform(self.model.user_embeddings(users, histories)).float().cpu().numpy()
        kk = min(self.model.n_items, k + max((len(e) for e in exclude or ()), default=0))
        _, idx = self.index.search(np.ascontiguousarray(uv), kk)
        out = np.full((len(idx), k), -1, dtype=np.int64)
        for r, row in enumerate(idx):  # per user: drop banned items, keep the first k (order kept)
            keep = row[~np.isin(row, exclude[r])] if exclude is not None and len(exclude[r]) else row
            keep = keep[keep >= 0][:k]
            out[r, :len(keep)] = keep
        return torch.from_numpy(out)
