"""LLM-as-RS family entry: `run(ctx) -> FamilyResult`.

Load the causal LM (local folder or resolver short name), add LoRA (and the variant's extras), train
on (history titles -> next title) prompts, one target each (`llm.train_mode: single`) or packed (a window
of a user's titles, every title after the first `llm.min_context` a target), through
`genrec.train.train_loop` with early stopping on a capped validation recall@10, save the adapter with
peft's save_pretrained, and return a recommender that decodes real titles only (constrained beam search
over the title trie).
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from genrec.errors import ConfigError
from genrec.family import Family, FamilyResult, register_family
from genrec.models.llm.cf_vectors import item_cf_vectors
from genrec.models.llm.config import LLMConfig
from genrec.models.llm.model import LLMRec, CFProjector, add_sid_tokens, load_base, resolve_model_path, \
    token_embedding_scale, wrap_lora
from genrec.models.llm.prompts import build_codec, layout_of, packed_examples, training_examples, unique_titles
from genrec.models.llm.recommender import LLMRecommender
from genrec.runtime import count_params, peak_memory_mb, resolve_precision

log = logging.getLogger("genrec")


def check_config(cfg) -> None:
    lc = cfg.llm
    if lc.history_items < 1:
        raise ConfigError(f"llm.history_items: must be >= 1, got {lc.history_items}")
    beams = cfg.decode.num_beams
    if beams < max(cfg.eval.ks):
        raise ConfigError(f"decode.num_beams={beams} < max(eval.ks)={max(cfg.eval.ks)}: beam search returns "
                          f"at most num_beams items; raise decode.num_beams or set eval.ks (e.g. [5, 10])")
    if beams < 10:
        raise ConfigError(f"decode.num_beams={beams}: validation uses recall@10, needs >= 10 beams")
    if lc.max_title_tokens < 1:
        raise ConfigError(f"llm.max_title_tokens: must be >= 1, got {lc.max_title_tokens}")
    layout = layout_of(lc)
    if layout == "list" and lc.use_chat_template:
        raise ConfigError("llm.use_chat_template: not supported with the list prompt layout (packed training); "
                          "set llm.use_chat_template=false or llm.prompt_layout=template with train_mode single")
    if lc.train_mode == "packed":
        if layout != "list":
            raise ConfigError("llm.train_mode=packed: needs llm.prompt_layout list (or auto), got template")
        if not 1 <= lc.min_context <= lc.history_items:
            raise ConfigError(f"llm.min_context: must be in [1, llm.history_items={lc.history_items}], "
                              f"got {lc.min_context}")
        if lc.variant == "sid_tokens" and lc.sid_history != lc.sid_target:
            raise ConfigError(f"llm.variant=sid_tokens with train_mode=packed: history items must read as the "
                              f"target, set llm.sid_history={lc.sid_target} (now {lc.sid_history})")


def autocast_dtype(cfg, device: torch.device) -> torch.dtype | None:
    """Decode under the same autocast as training (genrec.runtime.resolve_precision decides both)."""
    mp = resolve_precision(cfg.train.mixed_precision, device)
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mp)


def sid_token_ids(ctx, tok, base) -> tuple[np.ndarray, list[int], dict]:
    """SID codes from the shared SID tokenizer, added to the LM vocabulary: (ids [n_items, L], new ids, stats)."""
    from genrec.sid.tokenizer import tokenizer_for

    st, _, _ = tokenizer_for(ctx.data, ctx.cfg, progress=ctx.cfg.train.progress)
    codes = np.asarray(st.codes, dtype=np.int64)
    sizes = [int(v) for v in st.vocab_sizes]
    table = add_sid_tokens(tok, base, sizes)
    ids = np.stack([table[lv][codes[:, lv]] for lv in range(codes.shape[1])], 1)
    new = sorted({int(x) for row in table for x in row})
    return ids, new, {"sid_levels": len(sizes), "sid_vocab": sizes, **{k: v for k, v in st.stats.items()
                                                                        if isinstance(v, (int, float))}}


def build(ctx):
    """(LLMRec, PromptCodec, tokenizer, info) for ctx.cfg (not yet trained)."""
    cfg, lc = ctx.cfg, ctx.cfg.llm
    path = resolve_model_path(lc.model)
    t0 = time.perf_counter()
    tok, base = load_base(lc, ctx.device, path)
    info: dict = {"variant": lc.variant, "model_path": str(path), "load_s": round(time.perf_counter() - t0, 1)}
    titles, n_dup = unique_titles(list(ctx.data.item_titles))
    info["duplicate_titles_renamed"] = n_dup
    sid_ids, new_tokens, projector = None, None, None
    if lc.variant == "sid_tokens":
        sid_ids, new_tokens, stats = sid_token_ids(ctx, tok, base)
        info.update(stats)
    elif lc.variant == "cf_inject":
        cf, info["inject_cf"] = item_cf_vectors(ctx.split, ctx.data.n_items, lc.cf_dim, cfg.run.seed,
                                                cache=ctx.run_dir / f"cf_items_{lc.cf_dim}_{lc.cf_epochs}.npy",
                                                epochs=lc.cf_epochs, device=str(ctx.device))
        d_model = base.get_input_embeddings().weight.shape[1]
        torch.manual_seed(cfg.run.seed)
        projector = CFProjector(cf, d_model, lc.cf_hidden, token_embedding_scale(base))
    torch.manual_seed(cfg.run.seed)
    rec = LLMRec(wrap_lora(base, lc, new_tokens), projector)
    codec = build_codec(tok, titles, lc, soft_token=projector is not None, sid_ids=sid_ids)
    info["prompt_tokens_fixed"] = int(len(codec.prefix) + len(codec.suffix))
    info["title_tokens_mean"] = round(float(codec.tgt_len[:-1].mean()), 2)
    return rec.to(ctx.device), codec, tok, info


def train_examples(codec, split, lc) -> tuple[int, int, object, np.ndarray]:
    """(n prompts, n target items, collate(rows) -> numpy batch, user of each prompt) for llm.train_mode."""
    if lc.train_mode == "packed":
        win, n_t, users = packed_examples(split.train, lc.history_items, lc.min_context, lc.max_train_users,
                                          lc.targets_per_user)
        return len(win), int(n_t.sum()), lambda b: codec.collate_packed(win[b], n_t[b]), users
    hist, tgt, users = training_examples(split.train, lc.history_items, lc.max_train_users, lc.targets_per_user)
    return len(tgt), len(tgt), lambda b: codec.collate(hist[b], tgt[b], pad_left=False), users


def batch_stream(collate, n: int, batch_size: int, steps_per_epoch: int, seed: int, with_soft: bool,
                 counter: dict):
    """make_batches(epoch) for train_loop over n prompts (collate(rows) builds one batch): seeded per epoch,
    so a resumed run sees the same batches."""

    def make(epoch: int):
        if steps_per_epoch <= 0:
            idx = np.random.default_rng([seed, epoch]).permutation(n)
        else:  # a fixed number of full batches drawn from a stream of seeded permutations
            pos = np.arange(epoch * steps_per_epoch * batch_size, (epoch + 1) * steps_per_epoch * batch_size)
            passes = pos // n
            idx = np.empty(len(pos), dtype=np.int64)
            for p in np.unique(passes):
                sel = passes == p
                idx[sel] = np.random.default_rng([seed, int(p)]).permutation(n)[pos[sel] % n]
        for s in range(0, len(idx), batch_size):
            out = collate(idx[s: s + batch_size])
            mask = out["attention_mask"]
            counter["tokens"] += int(mask.sum())
            counter["attended"] += int((np.cumsum(mask, 1) * mask).sum())  # causal: token t sees t tokens
            counter["targets"] += int((out["labels"] != -100).sum())
            if not with_soft:
                out.pop("soft_items")
            yield {k: torch.from_numpy(v) for k, v in out.items()}

    return make


def count_resumed(make_batches, epochs: int, train_cfg) -> None:
    """A resumed run: rebuild (and so count) the seeded batches of the epochs before its checkpoint, at most
    train.max_steps x grad_accum of them."""
    cap = train_cfg.max_steps * max(1, train_cfg.grad_accum) if train_cfg.max_steps else float("inf")
    seen = 0
    for epoch in range(epochs):
        for _ in make_batches(epoch):
            seen += 1
            if seen >= cap:
                return


def compute_counts(config, counter: dict) -> dict:
    """The keys genrec.compute reads: train_tokens (real prompt + target tokens of every trained batch, all
    epochs), n_layers, context (mean causal attended length) and d_attn (heads x head width) of the base LM.
    LoRA: the base weights get no gradients, so 6 x N overstates the cost (see genrec.compute)."""
    c = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(c.num_attention_heads)
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    tokens = counter["tokens"]
    return {"train_tokens": tokens, "n_layers": int(c.num_hidden_layers), "d_attn": heads * int(head_dim),
            "context": round(counter["attended"] / tokens, 3) if tokens else 0.0}


def run(ctx):
    from genrec.eval.evaluate import evaluate
    from genrec.train import train_loop

    cfg, lc = ctx.cfg, ctx.cfg.llm
    check_config(cfg)
    rec, codec, tok, info = build(ctx)
    n_prompts, n_targets, collate, users = train_examples(codec, ctx.split, lc)
    info.update(train_mode=lc.train_mode, prompt_layout=codec.layout, train_examples=n_prompts,
                train_targets=n_targets, train_users=int(len(np.unique(users))))
    bs = cfg.train.batch_size
    spe = lc.steps_per_epoch if lc.steps_per_epoch > 0 else math.ceil(n_prompts / bs)
    counter = {"tokens": 0, "targets": 0, "attended": 0}
    make_batches = batch_stream(collate, n_prompts, bs, lc.steps_per_epoch, cfg.run.seed,
                                lc.variant == "cf_inject", counter)
    ac = autocast_dtype(cfg, ctx.device)
    valid = ctx.split.valid.head(cfg.decode.valid_users)
    holder: dict = {}

    def validate(model) -> float:
        if "r" not in holder or holder["r"].rec is not model:
            holder["r"] = LLMRecommender(model, codec, cfg.decode.num_beams, cfg.decode.batch_size, ac)
        m = evaluate(holder["r"], valid, ctx.data.n_items, [10], cfg.eval.exclude_history, cfg.eval.batch_size)
        return m["recall@10"]

    log.info("llm: %s (%s, %s), %d train prompts (%d targets) from %d users, %d batches/epoch", lc.model,
             lc.variant, lc.train_mode, n_prompts, n_targets, info["train_users"], spe)
    res = train_loop(rec, lambda m, b: m(**b), make_batches, cfg.train, ctx.run_dir / "train",
                     validate=validate if len(valid) else None, device=ctx.device, steps_per_epoch=spe,
                     desc=f"llm-{lc.variant}")
    rec = rec.to(ctx.device).eval()
    adapter = rec.save_adapter(ctx.run_dir / "adapter", lc, tok if lc.variant == "sid_tokens" else None)
    recommender = LLMRecommender(rec, codec, cfg.decode.num_beams, cfg.decode.batch_size, ac,
                                 progress=cfg.train.progress)
    params = count_params(rec)
    now_s = res.train_time_s - res.resumed_time_s  # throughput of the epochs trained in this process
    info.update(tokens_per_s=round(counter["tokens"] / now_s, 1) if counter["tokens"] and now_s > 0 else None)
    count_resumed(make_batches, res.resumed_from_epoch, cfg.train)
    info.update(compute_counts(rec.base.config, counter), train_target_tokens=counter["targets"] or None,
                resumed_from_epoch=res.resumed_from_epoch,
                peak_mem_mb=round(peak_memory_mb(ctx.device), 1),
                steps=res.steps, epochs_run=res.epochs_run, best_valid_recall10=res.best_metric,
                valid_users=len(valid), adapter=str(adapter),
                history=[{k: (round(v, 5) if isinstance(v, float) else v) for k, v in h.items()} for h in res.history])
    return FamilyResult(model=recommender, params=params, extra=info, train_time_s=res.train_time_s)


ITEM_TITLES = "item_titles.json"
ITEM_SID_CODES = "item_sid_codes.json"


def save_items(ctx) -> None:
    """What `load` needs besides the adapter: the (de-duplicated) item titles the codec was built from, and
    for the sid_tokens variant each item's SID codes (the cached SID tokenizer's table)."""
    titles, _ = unique_titles(list(ctx.data.item_titles))
    (ctx.run_dir / ITEM_TITLES).write_text(json.dumps(titles))
    if ctx.cfg.llm.variant == "sid_tokens":
        from genrec.sid.tokenizer import tokenizer_for

        st, _, _ = tokenizer_for(ctx.data, ctx.cfg, progress=False)
        (ctx.run_dir / ITEM_SID_CODES).write_text(json.dumps(np.asarray(st.codes, dtype=np.int64).tolist()))


def load(run_dir, cfg) -> LLMRecommender:
    """The recommender of a run folder: the base LM by its llm.model name (a local folder, or resolved
    offline by genrec.encoders.resolve), the adapter, and the prompt codec from the saved item titles."""
    from genrec.runtime import resolve_device

    run_dir, lc = Path(run_dir), cfg.llm
    if not (run_dir / "adapter").is_dir() or not (run_dir / ITEM_TITLES).is_file():
        raise ConfigError(f"{run_dir}: needs adapter/ and {ITEM_TITLES} (an LLM run from before they were saved: "
                          f"run it again)")
    device = resolve_device(cfg.run.device)
    rec, tok = LLMRec.load_adapter(run_dir / "adapter", device)
    titles = json.loads((run_dir / ITEM_TITLES).read_text())
    sid_ids = None
    if lc.variant == "sid_tokens":
        codes = np.asarray(json.loads((run_dir / ITEM_SID_CODES).read_text()), dtype=np.int64)
        sid_ids = np.stack([np.asarray(tok.convert_tokens_to_ids([f"<sid_{lv}_{c}>" for c in codes[:, lv]]))
                            for lv in range(codes.shape[1])], 1)
    codec = build_codec(tok, titles, lc, soft_token=rec.projector is not None, sid_ids=sid_ids)
    return LLMRecommender(rec, codec, cfg.decode.num_beams, cfg.decode.batch_size, autocast_dtype(cfg, device))


class LLMFamily(Family):
    name = "llm"
    sections = {"llm": LLMConfig}
    models = ("lora",)
    axis_columns = ("llm_model", "lora_rank", "llm_variant")
    size_axes = frozenset({"llm_model"})
    numeric_axes = frozenset({"lora_rank"})

    def check(self, cfg) -> None:
        super().check(cfg)
        check_config(cfg)

    def axes(self, cfg) -> dict:
        return dict(llm_model=cfg.llm.model, lora_rank=cfg.llm.lora_rank, llm_variant=cfg.llm.variant)

    def run(self, ctx) -> FamilyResult:
        result = run(ctx)
        save_items(ctx)
        return result

    def load(self, run_dir, cfg) -> LLMRecommender:
        return load(run_dir, cfg)


register_family(LLMFamily())
