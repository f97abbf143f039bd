"""Config section for the LLM-as-RS family (LoRA-tuned causal LM that generates the next item's title)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class LLMConfig:
    model: str = "smollm2-135m"  # short name (resolver), or a local HF folder
    # weights as loaded (autocast is train.mixed_precision); auto = bfloat16 where
    # genrec.runtime.resolve_precision("auto", device) picks bf16 (CUDA with bf16, CPU with AVX512-BF16/AMX), else float32
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    load_in: Literal["full", "8bit", "4bit"] = "full"  # 8bit/4bit need bitsandbytes + CUDA
    # LoRA
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    gradient_checkpointing: bool = False
    # prompt
    history_items: int = 10  # last N history items in the prompt
    prompt_template: str = "A user watched, in order:{history}. The next item is:"
    history_separator: str = ","  # between history titles
    title_prefix: str = " "  # prepended to every title before tokenising (BPE word boundary)
    use_chat_template: bool = False  # wrap the prompt as a user turn when the tokenizer has a chat template
    max_title_tokens: int = 32  # titles are cut to this many tokens (before EOS)
    # template: prefix, history titles joined by the separator, the template's suffix, then title + EOS.
    # list: prefix, then every title followed by the separator (the suffix is not used); the model continues
    # the list with the next title + separator. auto = list when train_mode is packed, else template.
    prompt_layout: Literal["auto", "template", "list"] = "auto"
    # training examples
    max_train_users: int = 0  # reduced runs: train on the first N users (0 = all)
    targets_per_user: int = 0  # only the last N (history -> next) pairs of each user (0 = every position)
    steps_per_epoch: int = 0  # batches per train_loop "epoch" (0 = one pass over the examples)
    # single: one (last history_items titles -> next title) example per prompt.
    # packed: one prompt = a window of history_items + 1 consecutive titles of a user; every title after the
    # first min_context is a target (conditioned on the titles before it in the window); list layout only.
    train_mode: Literal["single", "packed"] = "single"
    min_context: int = 1  # packed: titles before the first target of a window (1..history_items)
    # variants
    variant: Literal["plain", "cf_inject", "sid_tokens"] = "plain"
    cf_dim: int = 64  # cf_inject: CF item-embedding dimension
    cf_hidden: int = 256  # cf_inject: projector MLP hidden width
    cf_epochs: int = 30  # cf_inject: MF-BPR max epochs (genrec.models.cf.family.fit_item_embeddings)
    sid_history: Literal["sid", "title", "both"] = "both"  # sid_tokens: how history items read
    sid_target: Literal["sid", "title"] = "sid"  # sid_tokens: what the model generates
