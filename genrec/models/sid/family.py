"""The `sid` family: its config sections, checks, leaderboard axes and entry point."""
from __future__ import annotations

from genrec.family import Family, FamilyResult, register_family
from genrec.sid.config import SIDConfig, SIDModelConfig


class SIDFamily(Family):
    name = "sid"
    sections = {"sid": SIDConfig, "sid_model": SIDModelConfig}
    models = ("tiger",)
    axis_columns = ("encoder", "quantizer", "sid_levels", "sid_codebook", "sid_latent", "rec_arch", "rec_layers",
                    "rec_d_model", "rec_heads", "rec_d_ff", "inject", "rec_train_mode")
    size_axes = frozenset({"rec_layers", "rec_d_model", "rec_heads", "rec_d_ff", "sid_latent"})
    numeric_axes = frozenset({"sid_levels", "sid_codebook"})

    def check(self, cfg) -> None:
        from genrec.models.sid_family import check_config

        super().check(cfg)
        check_config(cfg)

    def axes(self, cfg) -> dict:
        s, m = cfg.sid, cfg.sid_model
        return dict(encoder=cfg.encoder.name, quantizer=s.quantizer, sid_levels=s.levels,
                    sid_codebook=s.codebook_size, sid_latent=s.latent_dim, rec_arch=m.arch, rec_layers=m.num_layers,
                    rec_d_model=m.d_model, rec_heads=m.num_heads, rec_d_ff=m.d_ff, inject=m.inject,
                    rec_train_mode=m.train_mode)

    def run(self, ctx) -> FamilyResult:
        from genrec.models.sid_family import run

        return run(ctx)


register_family(SIDFamily())
