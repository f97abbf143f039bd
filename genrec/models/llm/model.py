"""A causal LM with LoRA (peft) that reads histories as titles and scores the next title.

`LLMRec` wraps the peft model and, for the `cf_inject` variant, a trainable MLP that maps frozen CF item
vectors into the LM's embedding space (one soft token after each history title). The loss applies the
LM head only at target positions (the head of a 262k-token vocabulary is the costliest matmul otherwise).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrec.decode import cache_kwarg, output_cache
from genrec.encoders.resolve import resolve_model
from genrec.errors import ConfigError
from genrec.runtime import resolve_precision

log = logging.getLogger("genrec")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
META = "genrec_llm.json"
CF_FILE = "cf_projector.pt"


def resolve_model_path(name: str) -> Path:
    """A local HF folder as is; otherwise the shared resolver (short names from wheels)."""
    p = Path(name).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ConfigError(f"llm.model: folder {p} has no config.json (not a HF model folder)")
        return p
    return Path(resolve_model(name).path)


def weight_dtype(name: str, device: torch.device) -> torch.dtype:
    """llm.dtype as a torch dtype; auto = bfloat16 where resolve_precision('auto', device) picks bf16, else float32."""
    if name == "auto":
        return torch.bfloat16 if resolve_precision("auto", device) == "bf16" else torch.float32
    return DTYPES[name]


def load_base(cfg, device: torch.device, model_path: Path | None = None):
    """(tokenizer, causal LM) from cfg.model, optionally 8/4-bit (bitsandbytes + CUDA only)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = model_path or resolve_model_path(cfg.model)
    tok = AutoTokenizer.from_pretrained(str(path))
    kw: dict = {"dtype": weight_dtype(cfg.dtype, device)}
    if cfg.load_in != "full":
        if device.type != "cuda" or not torch.cuda.is_available():
            raise ConfigError(f"llm.load_in={cfg.load_in}: needs a CUDA device (use llm.load_in=full on CPU)")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ConfigError(f"llm.load_in={cfg.load_in}: needs the bitsandbytes package") from None
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_8bit=cfg.load_in == "8bit", load_in_4bit=cfg.load_in == "4bit",
            bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
        kw["device_map"] = {"": device.index or 0}
    model = AutoModelForCausalLM.from_pretrained(str(path), **kw)
    if cfg.load_in != "full":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    model.config.use_cache = False
    return tok, model


def add_sid_tokens(tok, model, sizes: list[int]) -> list[np.ndarray]:
    """Add `<sid_l_c>` tokens (level l, code c < sizes[l]); returns per-level token-id arrays and resizes the
    embeddings (input and tied output) when the vocabulary outgrows them."""
    names = [[f"<sid_{lv}_{c}>" for c in range(n)] for lv, n in enumerate(sizes)]
    tok.add_tokens([x for row in names for x in row], special_tokens=True)
    table = [np.array(tok.convert_tokens_to_ids(row), dtype=np.int64) for row in names]
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tok) > rows:
        model.resize_token_embeddings(len(tok))
    return table


def wrap_lora(model, cfg, trainable_tokens: list[int] | None = None):
    from peft import LoraConfig, get_peft_model

    if cfg.lora_rank <= 0:
        raise ConfigError(f"llm.lora_rank: must be positive, got {cfg.lora_rank}")
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [m for m in cfg.target_modules if m not in names]
    if missing:
        raise ConfigError(f"llm.target_modules: {missing} not found in {cfg.model!r}")
    lc = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                    target_modules=list(cfg.target_modules), task_type="CAUSAL_LM",
                    trainable_token_indices=trainable_tokens or None)
    if cfg.gradient_checkpointing and cfg.load_in == "full":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return get_peft_model(model, lc)


class CFProjector(nn.Module):
    """Frozen CF item vectors (standardised) -> MLP -> the LM's embedding space, scaled like real tokens."""

    def __init__(self, cf: np.ndarray, d_model: int, hidden: int, out_scale: float):
        super().__init__()
        x = torch.as_tensor(np.asarray(cf, dtype=np.float32))
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
        self.register_buffer("cf", x)
        self.register_buffer("scale", torch.tensor(float(out_scale)))
        self.net = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.GELU(), nn.Linear(hidden, d_model))

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.net(self.cf[items]) * self.scale


class LLMRec(nn.Module):
    def __init__(self, lm, projector: CFProjector | None = None):
        super().__init__()
        self.lm = lm  # peft model
        self.projector = projector

    @property
    def base(self):
        return self.lm.get_base_model()

    @property
    def backbone(self):
        return getattr(self.base, self.base.base_model_prefix)

    @property
    def vocab_size(self) -> int:
        return int(self.base.get_output_embeddings().weight.shape[0])

    def embed(self, input_ids: torch.Tensor, soft_items: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.base.get_input_embeddings()(input_ids)
        if self.projector is not None and soft_items is not None:
            m = soft_items >= 0
            emb = emb.masked_scatter(m[..., None], self.projector(soft_items[m]).to(emb.dtype))
        return emb

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.base.get_output_embeddings()(hidden)
        cap = getattr(self.base.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def target_nll(self, input_ids, attention_mask, position_ids, labels, soft_items=None) -> torch.Tensor:
        """Next-token cross-entropy of every labelled token (labels != -100), in row-major order [n_targets]."""
        emb = self.embed(input_ids, soft_items)
        hidden = self.backbone(inputs_embeds=emb, attention_mask=attention_mask, position_ids=position_ids,
                               use_cache=False).last_hidden_state
        tgt = labels[:, 1:]
        sel = tgt != -100
        logits = self.head(hidden[:, :-1][sel])
        return F.cross_entropy(logits.float(), tgt[sel], reduction="none")

    def forward(self, input_ids, attention_mask, position_ids, labels, soft_items=None) -> torch.Tensor:
        """Mean next-token cross-entropy over target tokens (titles + EOS / separator) only."""
        return self.target_nll(input_ids, attention_mask, position_ids, labels, soft_items).mean()

    def prompt_step(self, input_ids, attention_mask, position_ids, soft_items=None):
        """Prompt forward with a fresh KV cache: (next-token logits [B, V], cache)."""
        emb = self.embed(input_ids, soft_items)
        out = self.base(inputs_embeds=emb, attention_mask=attention_mask, position_ids=position_ids,
                        use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].float(), output_cache(out)

    def token_step(self, tokens, attention_mask, position_ids, cache):
        kw = {cache_kwarg(self.base): cache}
        out = self.base(input_ids=tokens[:, None], attention_mask=attention_mask, position_ids=position_ids[:, None],
                        use_cache=True, **kw)
        return out.logits[:, -1].float(), output_cache(out)

    # ------------------------------------------------------------------ adapters
    def save_adapter(self, folder: str | Path, cfg, tok=None) -> Path:
        """peft save_pretrained (+ tokenizer when tokens were added, + the CF projector, + the config)."""
        folder = Path(folder)
        self.lm.save_pretrained(str(folder))
        if tok is not None:
            tok.save_pretrained(str(folder))
        if self.projector is not None:
            torch.save(self.projector.state_dict(), folder / CF_FILE)
        (folder / META).write_text(json.dumps({"llm": asdict(cfg), "added_tokens": tok is not None}, indent=1))
        return folder

    @classmethod
    def load_adapter(cls, folder: str | Path, device: torch.device | str = "cpu",
                     model_path: str | Path | None = None) -> tuple["LLMRec", object]:
        """(LLMRec, tokenizer) from a save_adapter folder; the base model comes from the saved llm.model
        (or `model_path`)."""
        from peft import PeftModel
        from transformers import AutoTokenizer

        from genrec.models.llm.config import LLMConfig

        folder = Path(folder)
        meta = json.loads((folder / META).read_text())
        cfg = LLMConfig(**meta["llm"])
        tok, base = load_base(cfg, torch.device(device), Path(model_path) if model_path else None)
        if meta.get("added_tokens"):
            tok = AutoTokenizer.from_pretrained(str(folder))
            if len(tok) > base.get_input_embeddings().weight.shape[0]:
                base.resize_token_embeddings(len(tok))
        lm = PeftModel.from_pretrained(base, str(folder), is_trainable=False)
        proj = None
        if (folder / CF_FILE).is_file():
            sd = torch.load(folder / CF_FILE, map_location="cpu")
            d_model = base.get_input_embeddings().weight.shape[1]
            proj = CFProjector(sd["cf"].numpy(), d_model, sd["net.0.weight"].shape[0], 1.0)
            proj.load_state_dict(sd)
        return cls(lm, proj).to(device).eval(), tok


def token_embedding_scale(model) -> float:
    """RMS of real token embeddings as the model sees them (Gemma scales them by sqrt(d))."""
    emb = model.get_input_embeddings()
    n = emb.weight.shape[0]
    ids = torch.arange(0, n, max(1, n // 512), device=emb.weight.device)
    with torch.no_grad():
        return float(emb(ids).float().pow(2).mean().sqrt())
