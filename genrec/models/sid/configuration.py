"""Configuration of the SID recommender (model_type genrec_sid_rec): one class for the YAML `sid_model`
section and for the saved model (config.json).

Its `__init__` keywords are the `sid_model` keys; it validates them there (ValueError). The YAML section is a
dataclass view of those keywords (see SIDModelSection below): the config loader checks each value as it
reads a layer (a one-line ConfigError naming the file), and the family's check() builds SIDRecConfig from
the final section, so checks across keys (d_model divisible by num_heads for decoder_only, sequence mode
needs decoder_only) see the merged config, not an intermediate --set layer. The fields a run fills in from the data, the
tokenizer and the `decode` section (sid_vocab_sizes, n_items, max_history, inject_dim, num_beams,
decode_batch_size) are keyword-only extras: they are saved with the model but are not YAML keys.
"""
from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Literal

from transformers import PretrainedConfig

from genrec.models.sid.data import vocab_size_of

DERIVED = ("sid_vocab_sizes", "n_items", "max_history", "inject_dim", "num_beams", "decode_batch_size")
CHOICES = {"arch": ("encoder_decoder", "decoder_only"), "train_mode": ("prefix", "sequence"),
           "sequence_window": ("last", "random"), "feed_forward_proj": ("relu", "gated-gelu"),
           "inject": ("none", "cf", "encoder")}


class SIDRecConfig(PretrainedConfig):
    """TIGER-style recommender over semantic IDs.

    Args:
        arch: encoder_decoder (T5) or decoder_only (Llama).
        train_mode: prefix (one (history -> next item) example per row) or sequence (decoder_only: one
            causal pass per user window; every window item but the first is a target).
        sequence_window: sequence mode: the last max_history + 1 items, or a seeded random crop per epoch.
        num_layers: encoder layers (decoder_only: all layers); num_decoder_layers: T5 decoder layers.
        d_model, num_heads, d_kv, d_ff, dropout: backbone sizes (decoder_only: SwiGLU feed-forward).
        feed_forward_proj: T5 feed-forward (relu | gated-gelu).
        user_tokens: hashed user-id tokens at the start of the prompt (0 = none).
        examples_per_epoch: 0 = all; N = a seeded sample of N prefix examples (sequence mode: N windows).
        inject: none | cf (the CF family's MF-BPR item vectors) | encoder (the text-encoder vectors), added
            to each history item's SID token embeddings through an MLP of width inject_hidden.
        inject_cf_dim, inject_cf_epochs: inject=cf: MF-BPR width and maximum epochs.
    """

    model_type = "genrec_sid_rec"
    # filled in by a run (not YAML keys); declared fields, so transformers saves num_beams with the config
    sid_vocab_sizes: list[int] | None = None  # codebook size per SID level
    n_items: int = 0
    max_history: int = 50  # data.max_history
    inject_dim: int = 0  # width of the external per-item vector (0 = no injection)
    num_beams: int = 20  # decode.num_beams
    decode_batch_size: int = 64  # decode.batch_size: users per beam-search call

    def __init__(self, arch: Literal["encoder_decoder", "decoder_only"] = "encoder_decoder",
                 train_mode: Literal["prefix", "sequence"] = "prefix",
                 sequence_window: Literal["last", "random"] = "random", num_layers: int = 4,
                 num_decoder_layers: int = 4, d_model: int = 128, num_heads: int = 6, d_kv: int = 64,
                 d_ff: int = 1024, dropout: float = 0.1, feed_forward_proj: Literal["relu", "gated-gelu"] = "relu",
                 user_tokens: int = 0, examples_per_epoch: int = 0,
                 inject: Literal["none", "cf", "encoder"] = "none", inject_hidden: int = 256,
                 inject_cf_dim: int = 64, inject_cf_epochs: int = 20, **kwargs):
        user_tokens = kwargs.pop("n_user_tokens", user_tokens)  # folders saved before the rename
        keys = dict(arch=arch, train_mode=train_mode, sequence_window=sequence_window, num_layers=num_layers,
                    num_decoder_layers=num_decoder_layers, d_model=d_model, num_heads=num_heads, d_kv=d_kv,
                    d_ff=d_ff, dropout=dropout, feed_forward_proj=feed_forward_proj, user_tokens=user_tokens,
                    examples_per_epoch=examples_per_epoch, inject=inject, inject_hidden=inject_hidden,
                    inject_cf_dim=inject_cf_dim, inject_cf_epochs=inject_cf_epochs)
        check_values(keys)
        check_combination(keys)
        for name, value in keys.items():
            setattr(self, name, value)
        for name in DERIVED:  # popped before super(), which drops generation keys such as num_beams
            setattr(self, name, kwargs.pop(name, getattr(type(self), name)))
        super().__init__(**kwargs)

    @property
    def n_user_tokens(self) -> int:
        return self.user_tokens

    @property
    def n_levels(self) -> int:
        return len(self.sid_vocab_sizes or [])

    @property
    def vocab_size(self) -> int:
        return vocab_size_of(self.sid_vocab_sizes or [], self.user_tokens)


def check_values(k: dict) -> None:
    """ValueError naming the first `sid_model` key whose value is bad on its own."""
    for name, allowed in CHOICES.items():
        if k[name] not in allowed:
            raise ValueError(f"{name}: {k[name]!r} is not one of {list(allowed)}")
    for name in ("num_layers", "d_model", "num_heads", "d_kv", "d_ff", "inject_hidden", "inject_cf_dim",
                 "inject_cf_epochs"):
        if k[name] < 1:
            raise ValueError(f"{name} must be >= 1, got {k[name]}")
    for name in ("user_tokens", "examples_per_epoch"):
        if k[name] < 0:
            raise ValueError(f"{name} must be >= 0, got {k[name]}")
    if not 0 <= k["dropout"] < 1:
        raise ValueError(f"dropout must be in [0, 1), got {k['dropout']}")


def check_combination(k: dict) -> None:
    """ValueError for `sid_model` keys that do not go together."""
    if k["arch"] == "encoder_decoder" and k["num_decoder_layers"] < 1:
        raise ValueError(f"num_decoder_layers must be >= 1, got {k['num_decoder_layers']}")
    if k["arch"] == "decoder_only" and k["d_model"] % k["num_heads"]:
        raise ValueError(f"the decoder_only (Llama) backbone needs d_model divisible by num_heads "
                         f"(got {k['d_model']} and {k['num_heads']})")
    if k["train_mode"] == "sequence" and k["arch"] != "decoder_only":
        raise ValueError("train_mode=sequence trains one causal pass per window and needs arch=decoder_only "
                         "(the encoder_decoder model trains per prefix)")


def yaml_keys() -> dict[str, tuple]:
    """The `sid_model` keys: SIDRecConfig.__init__ keywords -> (type hint, default)."""
    hints = typing.get_type_hints(SIDRecConfig.__init__)
    params = inspect.signature(SIDRecConfig.__init__).parameters
    return {k: (hints[k], p.default) for k, p in params.items() if k != "self" and p.kind == p.POSITIONAL_OR_KEYWORD}


def _section_post_init(self) -> None:
    check_values(dataclasses.asdict(self))


# The YAML `sid_model` section: a plain dataclass generated from SIDRecConfig.__init__ (same keys, types and
# defaults; each value checked by the same check_values). genrec.config reads every transformers-5 PretrainedConfig as a
# dataclass of the base class's fields, so SIDRecConfig itself cannot be the section class yet; once it can,
# register SIDRecConfig and drop this view. `SIDRecConfig(**dataclasses.asdict(section))` builds the config.
SIDModelSection = dataclasses.make_dataclass(
    "SIDModelSection", [(k, tp, dataclasses.field(default=d)) for k, (tp, d) in yaml_keys().items()],
    namespace={"__post_init__": _section_post_init, "__module__": __name__})
