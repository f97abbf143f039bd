"""Configuration of the RQ-VAE quantizer (a transformers `PretrainedConfig`, model_type "genrec_rqvae")."""
from __future__ import annotations

from transformers import PretrainedConfig

from genrec.errors import ConfigError


class RQVAEConfig(PretrainedConfig):
    """Residual-quantised VAE over frozen item embeddings.

    Args:
        input_dim: width of the item embeddings it reads (the text encoder's output size).
        hidden_dims: encoder MLP widths; the decoder mirrors them.
        latent_dim: width of the latent vector that the codebooks quantise.
        levels: number of residual codebooks.
        codebook_size: codes per codebook.
        commitment_weight: weight of ||r - sg(e)||^2 (beta in the VQ-VAE paper).
        codebook_weight: weight of ||sg(r) - e||^2.
        dropout: dropout between hidden layers (0 = off).
    """

    model_type = "genrec_rqvae"

    def __init__(self, input_dim: int = 768, hidden_dims: list[int] | None = None, latent_dim: int = 32,
                 levels: int = 3, codebook_size: int = 256, commitment_weight: float = 0.25,
                 codebook_weight: float = 1.0, dropout: float = 0.0, **kwargs):
        hidden_dims = [512, 256, 128] if hidden_dims is None else [int(h) for h in hidden_dims]
        for name, v in (("input_dim", input_dim), ("latent_dim", latent_dim), ("levels", levels),
                        ("codebook_size", codebook_size)):
            if int(v) < 1:
                raise ConfigError(f"sid.{name}: must be >= 1, got {v}")
        if any(h < 1 for h in hidden_dims):
            raise ConfigError(f"sid.hidden_dims: widths must be >= 1, got {hidden_dims}")
        if commitment_weight < 0 or codebook_weight < 0:
            raise ConfigError("sid.commitment_weight / codebook_weight: must be >= 0")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"rqvae dropout: must be in [0, 1), got {dropout}")
        self.input_dim = int(input_dim)
        self.hidden_dims = hidden_dims
        self.latent_dim = int(latent_dim)
        self.levels = int(levels)
        self.codebook_size = int(codebook_size)
        self.commitment_weight = float(commitment_weight)
        self.codebook_weight = float(codebook_weight)
        self.dropout = float(dropout)
        super().__init__(**kwargs)
