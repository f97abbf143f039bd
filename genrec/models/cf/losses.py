"""Losses and regularisers shared by the CF models.

* `ranking_loss(pos [B], neg [B, N] or [B, N'], kind)`: bpr, bce, sampled_softmax (the positive
  against the sampled negatives), returned per example so callers can weight or log them.
* `full_softmax_loss(user [B, d], items [n, d], targets [B])`: cross-entropy over the whole catalogue.
* `directspec_penalty`: DirectSpec / DirectSpec+ spectrum balancing (Peng et al.).
* `AdapTau`: per-user adaptive temperature (Chen, Wu, Wu, Zhou, Cao, He, WWW 2023).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

LOSSES = ("bpr", "bce", "sampled_softmax", "softmax")


def ranking_loss(pos: torch.Tensor, neg: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-example loss from positive scores [B] and negative scores [B, N]."""
    if kind == "bpr":
        return -F.logsigmoid(pos[:, None] - neg).mean(1)
    if kind == "bce":
        return -F.logsigmoid(pos) - F.logsigmoid(-neg).mean(1)
    if kind in ("sampled_softmax", "softmax"):
        logits = torch.cat([pos[:, None], neg], 1)
        return torch.logsumexp(logits, 1) - pos
    raise ValueError(f"cf.loss: unknown loss {kind!r} (known: {', '.join(LOSSES)})")


def directspec_penalty(emb: torch.Tensor, plus: bool = False, tau: float = 0.5, rows: int = 256) -> torch.Tensor:
    """Spectrum-balancing penalty on a batch of embeddings [B, d] (the first `rows` rows are used).

    Form implemented (our reading of Peng et al., "Balancing Embedding Spectrum for Recommendation",
    arXiv 2406.12032): rows are L2-normalised (E-hat), so sum_k sigma_k^2 = B is fixed, and
      DirectSpec:  R = ||E-hat^T E-hat||_F^2 / B^2 = sum_k sigma_k^4 / B^2 = mean_{i,j} (e_i . e_j)^2.
    With the energy fixed, minimising sum sigma^4 pushes the singular values towards equal (a flat
    spectrum); the gradient of R/4 is E E^T E, so a gradient step is the all-pass update
    E <- E - eta E E^T E, i.e. sigma <- sigma - eta sigma^3 (large directions shrink fastest).
      DirectSpec+: the self-paced version weights the pairs by softmax_j(e_i . e_j / tau), whose
    potential is the uniformity-style R+ = tau * mean_i log sum_{j != i} exp(e_i . e_j / tau)
    (gradient sum_j softmax_ij e_j): the most similar (collapsed) pairs are pushed apart hardest.
    """
    e = F.normalize(emb[:rows].float(), dim=-1)
    sim = e @ e.T
    if not plus:
        return (sim ** 2).mean()
    n = sim.shape[0]
    if n < 2:
        return sim.new_zeros(())
    sim = sim.masked_fill(torch.eye(n, dtype=torch.bool, device=sim.device), float("-inf"))
    return tau * (torch.logsumexp(sim / tau, 1) - math.log(n - 1)).mean()


def info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """InfoNCE between two views [B, d] (row i of a and b are a positive pair; in-batch negatives)."""
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    logits = a @ b.T / tau
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device))


def lambert_w(x: np.ndarray) -> np.ndarray:
    from scipy.special import lambertw

    return np.real(lambertw(np.maximum(x, -1.0 / math.e + 1e-9))).astype(np.float64)


# AdapTau.update scores the training interactions this many at a time: gathering all of them at once
# holds 3 x interactions x d floats (ML-1M at d=2048: ~22 GB). Each cosine is the same row sum however
# many rows a block has, so the result does not depend on it (tested).
UPDATE_ROWS = 16384


def pair_dots(a: torch.Tensor, b: torch.Tensor, ia: torch.Tensor, ib: torch.Tensor) -> torch.Tensor:
    """a[ia[k]] . b[ib[k]] for every k, UPDATE_ROWS pairs at a time (memory: a block, not all pairs)."""
    out = a.new_empty(len(ia))
    for s in range(0, len(ia), UPDATE_ROWS):
        out[s:s + UPDATE_ROWS] = (a[ia[s:s + UPDATE_ROWS]] * b[ib[s:s + UPDATE_ROWS]]).sum(-1)
    return out


class AdapTau:
    """Per-user adaptive inverse temperature for normalised (cosine) scores.

    Our reading of Adap-tau (Jiawei Chen, Junkang Wu, Jiancan Wu, Sheng Zhou, Xuezhi Cao, Xiangnan He,
    "Adap-tau: Adaptively Modulating Embedding Magnitude for Recommendation", WWW 2023, arXiv 2302.04775).
    Scores are w_u * cos(u, i), where w_u = 1 / tau_u, updated once per epoch:
      1. global w_0 from the data and the current embeddings: with U' the users above the 20% degree
         quantile, D' their interactions and I the catalogue,
            w_0 = (log(|U'| |I| / |D'|) - log 2) / (mean_{(u,i) in D'} cos(u,i) - mean_{u in U'} u.mean_i(i-hat))
         i.e. the scale at which a typical positive beats the average item by the log-odds that a random
         (user, item) cell is observed (the first epoch uses 1 / cf.tau);
      2. per-user w_u = w_0 * exp(-W((L_u - mean_v L_v) / lambda)), W = Lambert W (argument clipped at
         -1/e), L_u the user's mean training loss in the previous epoch, lambda = cf.adap_tau_lambda:
         users whose loss is above average get a higher temperature (softer scores), easy users a lower one.
    Per-user temperatures do not change a user's ranking, so scoring uses cos / tau and w_u is only a
    training-time quantity: not in the saved model, but in every training checkpoint (state_dict), so
    that a resumed run's next update sees the losses of the epoch before the cut.
    Data-parallel: each process records the losses of its own batches; sync() sums them over the
    processes (once an epoch, before the update or a checkpoint), so every process gets the one-process w_u.
    """

    def __init__(self, n_users: int, tau: float, lam: float = 1.0):
        self.n_users = n_users
        self.w = torch.full((n_users,), 1.0 / tau)
        self.loss_sum = torch.zeros(n_users, dtype=torch.float64)
        self.loss_cnt = torch.zeros(n_users, dtype=torch.float64)
        self.lam = lam
        self.w0 = 1.0 / tau
        self.synced = False  # the loss statistics are already summed over the data-parallel processes

    def state_dict(self) -> dict:
        """What a resumed run needs (w_u is not in it: the next epoch's update recomputes it from these)."""
        return {"w0": self.w0, "loss_sum": self.loss_sum.cpu(), "loss_cnt": self.loss_cnt.cpu(), "synced": self.synced}

    def load_state_dict(self, state: dict) -> None:
        self.w0 = float(state["w0"])
        self.loss_sum, self.loss_cnt = state["loss_sum"].double(), state["loss_cnt"].double()
        self.synced = bool(state["synced"])

    def sync(self) -> None:
        """Sum the loss statistics over the data-parallel processes (a no-op in one process, or when done
        already this epoch). Every process must call it at the same point."""
        import torch.distributed as dist

        if not self.synced and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
            both = torch.stack([self.loss_sum, self.loss_cnt]).to(dev)
            dist.all_reduce(both)
            self.loss_sum, self.loss_cnt = both.unbind()
        self.synced = True

    def record(self, users: torch.Tensor, losses: torch.Tensor) -> None:
        """Add a batch's per-example losses to its users' sums. On a GPU the sums stay there (no host sync
        per training step); update() and state_dict() bring them to the CPU."""
        dev = users.device if users.device.type == "cuda" else torch.device("cpu")
        if self.loss_sum.device != dev:
            self.loss_sum, self.loss_cnt = self.loss_sum.to(dev), self.loss_cnt.to(dev)
        u = users.detach().to(dev)
        self.loss_sum.index_add_(0, u, losses.detach().to(dev, torch.float64))
        self.loss_cnt.index_add_(0, u, torch.ones_like(u, dtype=torch.float64))

    @torch.no_grad()
    def update(self, user_emb: torch.Tensor, item_emb: torch.Tensor, users: np.ndarray, items: np.ndarray) -> None:
        """Recompute w_0 and w_u from the current (raw) embeddings and the last epoch's losses (summed over
        the data-parallel processes)."""
        self.sync()
        ue = F.normalize(user_emb.float(), dim=-1).cpu()
        ie = F.normalize(item_emb.float(), dim=-1).cpu()
        deg = np.bincount(users, minlength=self.n_users)
        keep_u = deg > np.quantile(deg, 0.2)
        if keep_u.sum() == 0:
            keep_u = deg > 0
        keep_d = keep_u[users]
        u_t, i_t = torch.from_numpy(users[keep_d]), torch.from_numpy(items[keep_d])
        pos = pair_dots(ue, ie, u_t, i_t).mean()
        avg = (ue[torch.from_numpy(np.flatnonzero(keep_u))] @ ie.mean(0)).mean()
        gap = float(pos - avg)
        c = math.log(keep_u.sum() * ie.shape[0] / max(keep_d.sum(), 1)) - math.log(2.0)
        if gap > 1e-3 and c > 0:
            self.w0 = float(np.clip(c / gap, 1.0, 100.0))
        self.loss_sum, self.loss_cnt = self.loss_sum.cpu(), self.loss_cnt.cpu()
        seen = self.loss_cnt > 0
        w = torch.full((self.n_users,), self.w0, dtype=torch.float64)
        if seen.any():
            mean_loss = self.loss_sum[seen] / self.loss_cnt[seen]
            dev = ((mean_loss - mean_loss.mean()) / self.lam).numpy()
            w[seen] = self.w0 * torch.from_numpy(np.exp(-lambert_w(dev)))
        self.w = w.float()
        self.loss_sum.zero_()
        self.loss_cnt.zero_()
        self.synced = False
