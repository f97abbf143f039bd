"""Config section for the LLM-as-RS family."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class LLMConfig:
    model: str = "smollm2-135m"  # short name, HF id or local folder
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    history_items: int = 10  # last N history titles in the prompt
    prompt_template: str = "A user watched, in order: {history}. The next item is:"
    use_chat_template: bool = False
    max_title_tokens: int = 32
    num_beams: int = 10
    gradient_checkpointing: bool = False
    load_in: Literal["full", "8bit", "4bit"] = "full"
    variant: Literal["plain", "cf_inject", "sid_tokens"] = "plain"
    max_train_users: int = 0  # reduced runs: train on the first N users (0 = all)
