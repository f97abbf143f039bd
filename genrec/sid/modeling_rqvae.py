"""RQ-VAE quantizer: MLP encoder -> `levels` residual codebooks -> mirrored MLP decoder.

A transformers `PreTrainedModel` (model_type "genrec_rqvae", registered with AutoConfig/AutoModel), so a
trained quantizer is a self-describing folder (`save_pretrained` / `AutoModel.from_pretrained`).

Training (`fit_rqvae`): Adam on reconstruction MSE + codebook + commitment terms with a straight-through
estimator; each codebook is k-means initialised on the residuals of the full training set before the first
step, and codes left unused during an epoch are re-seeded from current residuals (dead-code restarts),
which guards against codebook collapse. Seeded and deterministic on CPU.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import trange
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as hf_init
from transformers.utils import ModelOutput

from genrec.sid.configuration_rqvae import RQVAEConfig

log = logging.getLogger("genrec")


def _kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each next centre is drawn with probability proportional to squared distance."""
    n = x.shape[0]
    idx = [int(torch.randint(n, (1,), generator=generator))]
    d2 = (x - x[idx[0]]).pow(2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:  # fewer distinct points than centres: duplicate random points (they stay unused)
            idx.append(int(torch.randint(n, (1,), generator=generator)))
            continue
        i = int(torch.multinomial(d2 / total, 1, generator=generator))
        idx.append(i)
        d2 = torch.minimum(d2, (x - x[i]).pow(2).sum(1))
    return x[torch.tensor(idx)].clone()


def kmeans_torch(x: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded k-means (k-means++ seeding, then Lloyd): returns (centres [k, d], assignment [n]).

    Empty clusters are re-seeded with the worst-fitting points.
    """
    n = x.shape[0]
    centers = _kmeans_pp(x, k, generator)
    assign = torch.zeros(n, dtype=torch.long)
    for _ in range(max(iters, 1)):
        d = torch.cdist(x, centers).pow_(2)
        dist, assign = d.min(1)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        nonempty = counts > 0
        new = centers.clone()
        new[nonempty] = sums[nonempty] / counts[nonempty, None].to(x.dtype)
        empty = (~nonempty).nonzero().squeeze(1)
        if 0 < len(empty) and n >= k:
            worst = dist.argsort(descending=True, stable=True)[: len(empty)]
            new[empty] = x[worst]
        if torch.equal(new, centers):
            break
        centers = new
    assign = torch.cdist(x, centers).argmin(1)
    return centers, assign


def _mlp(widths: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


@dataclass
class RQVAEOutput(ModelOutput):
    loss: torch.Tensor | None = None
    recon_loss: torch.Tensor | None = None
    codebook_loss: torch.Tensor | None = None
    commitment_loss: torch.Tensor | None = None
    codes: torch.LongTensor | None = None  # [B, levels]
    reconstruction: torch.Tensor | None = None  # [B, input_dim]
    latent: torch.Tensor | None = None  # [B, latent_dim], before quantisation
    residuals: torch.Tensor | None = None  # [levels, B, latent_dim], what each codebook saw (detached)


class RQVAEModel(PreTrainedModel):
    config_class = RQVAEConfig
    base_model_prefix = "rqvae"
    main_input_name = "embeddings"

    def __init__(self, config: RQVAEConfig):
        super().__init__(config)
        widths = [config.input_dim, *config.hidden_dims, config.latent_dim]
        self.encoder = _mlp(widths, config.dropout)
        self.decoder = _mlp(widths[::-1], config.dropout)
        self.codebooks = nn.Parameter(torch.empty(config.levels, config.codebook_size, config.latent_dim))
        # inputs are standardised as (x - input_mean) * input_scale; fit_rqvae sets both from the data
        self.register_buffer("input_mean", torch.zeros(config.input_dim))
        self.register_buffer("input_scale", torch.ones(()))
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            hf_init.xavier_uniform_(module.weight)
            hf_init.zeros_(module.bias)
        elif isinstance(module, RQVAEModel):
            hf_init.normal_(module.codebooks, std=1.0 / math.sqrt(module.config.latent_dim))
            hf_init.zeros_(module.input_mean)
            hf_init.ones_(module.input_scale)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) * self.input_scale

    def unstandardize(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.input_scale + self.input_mean

    # ------------------------------------------------------------------ quantisation
    def quantize(self, z: torch.Tensor):
        """Residual quantisation of latents z [B, D].

        Returns (quantised sum [B, D], codes [B, L], codebook loss, commitment loss, residuals [L, B, D]).
        """
        residual = z
        quant = torch.zeros_like(z)
        codes, seen = [], []
        cb_loss = z.new_zeros(())
        commit = z.new_zeros(())
        for level in range(self.config.levels):
            book = self.codebooks[level]
            dist = residual.pow(2).sum(1, keepdim=True) - 2 * residual @ book.T + book.pow(2).sum(1)
            idx = dist.argmin(1)
            e = book[idx]
            cb_loss = cb_loss + F.mse_loss(e, residual.detach())
            commit = commit + F.mse_loss(residual, e.detach())
            quant = quant + e
            seen.append(residual.detach())
            residual = residual - e.detach()
            codes.append(idx)
        return quant, torch.stack(codes, 1), cb_loss, commit, torch.stack(seen)

    def forward(self, embeddings: torch.Tensor, **kwargs) -> RQVAEOutput:
        """Loss = MSE(decoder(z_q), x) on standardised x + codebook + commitment terms."""
        xs = self.standardize(embeddings)
        z = self.encoder(xs)
        quant, codes, cb_loss, commit, seen = self.quantize(z)
        z_q = z + (quant - z).detach()  # straight-through: decoder gradients flow to the encoder
        recon = self.decoder(z_q)
        recon_loss = F.mse_loss(recon, xs)
        loss = recon_loss + self.config.codebook_weight * cb_loss + self.config.commitment_weight * commit
        return RQVAEOutput(loss=loss, recon_loss=recon_loss, codebook_loss=cb_loss, commitment_loss=commit,
                           codes=codes, reconstruction=self.unstandardize(recon), latent=z, residuals=seen)

    @torch.no_grad()
    def residuals(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-level residuals [L, n, D] that each codebook sees, and codes [n, L] (current mode)."""
        _, codes, _, _, seen = self.quantize(self.encoder(self.standardize(embeddings)))
        return seen, codes

    @torch.no_grad()
    def encode_codes(self, embeddings, batch_size: int = 8192) -> np.ndarray:
        """Embeddings [n, input_dim] -> codes int64 [n, levels] (eval mode, batched)."""
        was = self.training
        self.eval()
        x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        out = [self.quantize(self.encoder(self.standardize(x[i:i + batch_size])))[1]
               for i in range(0, len(x), batch_size)]
        self.train(was)
        return torch.cat(out).numpy().astype(np.int64) if out else np.zeros((0, self.config.levels), np.int64)

    @torch.no_grad()
    def decode_codes(self, codes) -> np.ndarray:
        """Codes [n, levels] -> decoder reconstructions [n, input_dim] (eval mode)."""
        was = self.training
        self.eval()
        c = torch.as_tensor(np.asarray(codes, dtype=np.int64))
        quant = self.codebooks[torch.arange(self.config.levels), c].sum(1)  # [n, D]
        out = self.unstandardize(self.decoder(quant)).numpy()
        self.train(was)
        return out

    @torch.no_grad()
    def kmeans_init(self, embeddings: torch.Tensor, iters: int, generator: torch.Generator) -> None:
        """Set each codebook to the k-means centres of its level's residuals (levels in order)."""
        was = self.training
        self.eval()
        residual = self.encoder(self.standardize(embeddings))
        for level in range(self.config.levels):
            centers, assign = kmeans_torch(residual, self.config.codebook_size, iters, generator)
            self.codebooks.data[level] = centers
            residual = residual - centers[assign]
        self.train(was)

    @torch.no_grad()
    def restart_dead_codes(self, residuals: torch.Tensor, usage: torch.Tensor, generator: torch.Generator) -> list[int]:
        """Re-seed the codes with zero `usage` [L, K] from random current residuals [L, n, D] of their level."""
        n = residuals.shape[1]
        restarted = []
        for level in range(self.config.levels):
            dead = (usage[level] == 0).nonzero().squeeze(1)
            if len(dead):
                pick = torch.randperm(n, generator=generator)[: len(dead)]
                if len(pick) < len(dead):
                    pick = torch.randint(n, (len(dead),), generator=generator)
                self.codebooks.data[level, dead] = residuals[level, pick]
            restarted.append(int(len(dead)))
        return restarted


AutoConfig.register(RQVAEConfig.model_type, RQVAEConfig, exist_ok=True)
AutoModel.register(RQVAEConfig, RQVAEModel, exist_ok=True)


def fit_rqvae(model: RQVAEModel, embeddings: np.ndarray, epochs: int, batch_size: int, lr: float, seed: int,
              kmeans_init: bool = True, kmeans_iters: int = 25, dead_code_restart: bool = True,
              standardize: bool = True, progress: bool = True, device: torch.device | str | None = None) -> dict:
    """Train `model` in place on item embeddings [n, input_dim]; returns a history dict.

    standardize: set the model's input_mean / input_scale so it sees centred inputs of unit mean square
    (normalised sentence embeddings have per-dimension variance ~1/d, which would make the reconstruction
    term negligible next to the codebook terms). Minibatch Adam (batch_size <= 0 or >= n: full batch),
    shuffled by a generator seeded with `seed`. K-means initialisation runs once on all items before the
    first step; after every epoch but the last, codes that no item picked during the epoch are re-seeded
    from residuals of their level seen during the epoch.

    device: where the minibatch steps run (default cpu). The k-means initialisation and the shuffling
    generator stay on the CPU, losses are summed on the device (one host sync per epoch), and the model
    is back on the CPU on return.
    """
    x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    n = x.shape[0]
    if n == 0:
        raise ValueError("fit_rqvae: no embeddings to train on")
    if standardize:
        mean = x.double().mean(0)
        rms = (x.double() - mean).pow(2).mean().sqrt().item()
        model.input_mean.copy_(mean.float())
        model.input_scale.fill_(1.0 / rms if rms > 0 else 1.0)
    gen = torch.Generator().manual_seed(seed)
    bs = n if batch_size <= 0 or batch_size >= n else batch_size
    if kmeans_init:
        model.kmeans_init(x, kmeans_iters, gen)
    dev = torch.device(device or "cpu")
    model.to(dev)
    x = x.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    L, K = model.config.levels, model.config.codebook_size
    offsets = torch.arange(L, device=dev) * K
    hist: dict[str, list] = {"loss": [], "recon_loss": [], "restarted": []}
    model.train()
    bar = trange(epochs, desc="rqvae", disable=not progress, leave=False)
    for ep in bar:
        perm = torch.randperm(n, generator=gen)
        usage = torch.zeros(L * K, dtype=torch.long, device=dev)
        seen = []
        sums = torch.zeros(2, dtype=torch.float64, device=dev)
        for i in range(0, n, bs):
            idx = perm[i:i + bs].to(dev)
            out = model(x[idx])
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            usage += torch.bincount((out.codes + offsets).flatten(), minlength=L * K)
            if dead_code_restart:
                seen.append(out.residuals)
            sums += torch.stack([out.loss.detach(), out.recon_loss.detach()]).double() * len(idx)
        tot, rec = sums.tolist()
        hist["loss"].append(tot / n)
        hist["recon_loss"].append(rec / n)
        if dead_code_restart and ep < epochs - 1:
            dead = usage.view(L, K) == 0
            restarted = model.restart_dead_codes(torch.cat(seen, 1), usage.view(L, K), gen)
            if sum(restarted):
                _reset_adam_rows(opt, model.codebooks, dead)
            hist["restarted"].append(restarted)
        bar.set_postfix(loss=f"{tot / n:.4g}", recon=f"{rec / n:.4g}")
    model.eval()
    model.to("cpu")
    return hist


def _reset_adam_rows(opt: torch.optim.Adam, param: torch.Tensor, rows: torch.Tensor) -> None:
    """Zero Adam's moments for re-seeded codes so stale momentum does not drag them away."""
    state = opt.state.get(param)
    if not state:
        return
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key][rows] = 0.0
