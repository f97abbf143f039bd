"""A tiny random Llama + word-level tokenizer saved as a local HF folder (tests and smoke runs, no download)."""
from __future__ import annotations

import re
from pathlib import Path

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]


def make_tiny_llm(folder: str | Path, texts: list[str], hidden: int = 32, layers: int = 2, heads: int = 4,
                  seed: int = 0, tie_embeddings: bool = True) -> Path:
    """Train a WordLevel tokenizer on `texts` (plus the default prompt words), build a random 2-layer Llama
    whose vocabulary matches it, and save both to `folder`."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t)})
    vocab = {w: i for i, w in enumerate(SPECIALS + words)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                  eos_token="</s>")
    tok.save_pretrained(str(folder))
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                      max_position_embeddings=1024, pad_token_id=0, bos_token_id=2, eos_token_id=3,
                      tie_word_embeddings=tie_embeddings)
    LlamaForCausalLM(cfg).save_pretrained(str(folder))
    return folder


def prompt_words(template: str = "A user watched, in order:{history}. The next item is:", sep: str = ",") -> list[str]:
    return [template.replace("{history}", " "), sep]
