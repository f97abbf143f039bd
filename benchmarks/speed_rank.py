"""Sections `rank` (full-ranking evaluation and 1M-item retrieval), `quant` (SID quantizer training time)
and `encoder` (frozen text encoder throughput).

rank: genrec.eval.evaluate over all ML-1M test users x all items with a CF model (MF, random embeddings of
the trained shape: throughput does not depend on the values) vs a per-user loop that scores, masks and
ranks one user at a time; then top-10 retrieval over a synthetic 1M-item catalogue: batched matmul + topk
vs a per-user loop, and genrec's FaissRanker (faiss IndexFlatIP) vs the batched matmul.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from speed_common import Bench, ml1m_like

from genrec.models.cf.config import CFConfig


def have_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------------------- full ranking


def naive_eval(model, ev, ks: list[int]) -> dict:
    """One user at a time: scores, history mask, rank of the target (the reference; no ties expected)."""
    users_t, items_t = model.tables()
    U, I = users_t.detach(), items_t.detach()
    out = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg")}
    for u, h, t in zip(ev.users, ev.histories, ev.targets):
        s = (I @ U[int(u)]).cpu().numpy()
        hist = h[h != t]
        s[hist] = -np.inf
        g = int((s > s[t]).sum())
        for k in ks:
            if g < k:
                out[f"recall@{k}"] += 1.0
                out[f"ndcg@{k}"] += 1.0 / math.log2(g + 2)
    return {k: v / len(ev.users) for k, v in out.items()}


def rank_section(bench: Bench) -> None:
    from genrec.eval.evaluate import evaluate
    from genrec.models.cf.family import build_model

    d = ml1m_like(bench)
    ev = d.split.test
    model = build_model("mf_bpr", CFConfig(dim=64), len(d.split.train), d.n_items, seed=bench.seed)
    model = model.to(bench.device).eval()
    ks = [10, 20]
    bs = 1024
    (t_o, res), mem_o = bench.peak_mb(lambda: bench.time(lambda: evaluate(model, ev, d.n_items, ks, True, bs)))
    (t_r, ref), mem_r = bench.peak_mb(lambda: bench.time(lambda: naive_eval(model, ev, ks), repeats=1))
    diff = max(abs(res[k] - ref[k]) for k in ref)
    n = len(ev.users)
    note = (f"{d.what}: {n} users x {d.n_items} items, MF dim 64 (random weights), history excluded; ours "
            f"evaluate(batch {bs}) vs a per-user loop; max |metric diff| {diff:.1e} "
            f"(recall@10 {res['recall@10']:.4f})")
    bench.add("rank", "full-ranking eval MF", n / t_o, n / t_r, "users/s", note)
    bench.add("rank", "full-ranking eval MF peak memory", mem_o, mem_r, "MB",
              "CUDA peak allocated" if bench.cuda else "not measured on the CPU")
    retrieval(bench)


def dense_topk(uv: torch.Tensor, iv: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    return torch.cat([torch.topk(uv[s:s + chunk] @ iv.T, k, dim=1).indices for s in range(0, len(uv), chunk)])


def retrieval(bench: Bench) -> None:
    from genrec.models.cf.base import FaissRanker
    from genrec.models.cf.family import build_model

    n_items = bench.pick(20_000, 1_000_000, 1_000_000)
    U = bench.pick(16, 256, 4096)
    k, dim = 10, 64
    mf = build_model("mf_bpr", CFConfig(dim=dim), U, n_items, seed=bench.seed).to(bench.device).eval()
    users = torch.arange(U)
    hists = [np.zeros(0, dtype=np.int64)] * U
    iv = mf.item_embeddings()
    uv = mf.user_embeddings(users.to(bench.device))
    chunk = bench.pick(8, 32, 1024)
    n_loop = bench.pick(8, 32, 256)  # users the per-user loop does (time scaled per user)

    t_dense, top_dense = bench.time(lambda: dense_topk(uv, iv, k, chunk))

    def loop():
        return torch.stack([torch.topk(iv @ uv[i], k).indices for i in range(n_loop)])

    t_loop, top_loop = bench.time(loop, repeats=1)
    same = (top_loop.sort(1).values == top_dense[:n_loop].sort(1).values).all(1).float().mean().item()
    what = f"{n_items:,} items x dim {dim}, top-{k}"
    bench.add("rank", f"retrieval {n_items // 1000}k items: batched matmul+topk vs per-user loop", U / t_dense,
              n_loop / t_loop, "users/s", f"{what}; {U} users in chunks of {chunk} (loop: {n_loop} users); "
              f"same top-{k} sets for {same:.3f} of users")
    if not have_faiss():
        bench.add("rank", f"retrieval {n_items // 1000}k items: faiss IndexFlatIP vs batched matmul", None,
                  U / t_dense, "users/s", "skipped: faiss is not installed here")
        return
    import time

    t0 = time.perf_counter()
    ranker = FaissRanker(mf)
    build_s = time.perf_counter() - t0
    t_faiss, top_f = bench.time(lambda: ranker.recommend(users, hists, k))
    same = (top_f[:, :k].sort(1).values == top_dense.cpu().sort(1).values).all(1).float().mean().item()
    bench.add("rank", f"retrieval {n_items // 1000}k items: faiss IndexFlatIP vs batched matmul", U / t_faiss,
              U / t_dense, "users/s", f"{what}; genrec FaissRanker.recommend (CPU index, built in {build_s:.2f} s) "
              f"vs torch on {bench.device.type}; same top-{k} sets for {same:.3f} of users")


# ----------------------------------------------------------------------------- quantizers


def naive_rq_kmeans(x: np.ndarray, levels: int, k: int, iters: int, seed: int) -> np.ndarray:
    """Reference residual k-means: plain numpy Lloyd iterations (full distance matrix) per level."""
    rng = np.random.default_rng(seed)
    res = x.astype(np.float32).copy()
    codes = np.zeros((len(x), levels), dtype=np.int64)
    for lv in range(levels):
        c = res[rng.choice(len(res), k, replace=False)].copy()
        for _ in range(iters):
            a = ((res ** 2).sum(1, keepdims=True) - 2 * res @ c.T + (c ** 2).sum(1)[None]).argmin(1)
            cnt = np.bincount(a, minlength=k)
            sums = np.zeros_like(c)
            np.add.at(sums, a, res)
            c = np.where(cnt[:, None] > 0, sums / np.maximum(cnt, 1)[:, None], c)
        codes[:, lv] = a
        res -= c[a]
    return codes


def quant_section(bench: Bench) -> None:
    import time

    from genrec.sid.config import SIDConfig
    from genrec.sid.tokenizer import train_tokenizer

    n = bench.pick(1000, 10_000, 10_000)
    levels, k = bench.pick((2, 32), (3, 256), (3, 256))
    epochs = bench.pick(2, 10, 100)
    x = np.random.default_rng(bench.seed).standard_normal((n, 768)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    per = 10_000 / n
    cfg = SIDConfig(quantizer="rqvae", levels=levels, codebook_size=k, epochs=epochs, device=str(bench.device))
    t0 = time.perf_counter()
    tok = train_tokenizer(x, cfg, bench.seed, progress=False)
    t = time.perf_counter() - t0
    bench.add("quant", f"rqvae {levels}x{k} train ({epochs} epochs)", t * per, None, "s/10k items",
              f"{n} random 768-d items, batch {cfg.batch_size}, k-means init + dead-code restarts; "
              f"{t * per / epochs:.3f} s per epoch per 10k items; codebook util "
              f"{tok.stats.get('codebook_util', float('nan')):.3f}; minibatch steps on {bench.device} (sid.device), "
              "k-means init on the CPU")
    if not have_faiss():
        bench.add("quant", f"rq_kmeans {levels}x{k} train", None, None, "s/10k items",
                  "skipped: faiss is not installed here")
        return
    cfg = SIDConfig(quantizer="rq_kmeans", levels=levels, codebook_size=k)
    t0 = time.perf_counter()
    train_tokenizer(x, cfg, bench.seed, progress=False)
    t_o = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive_rq_kmeans(x, levels, k, cfg.kmeans_iters, bench.seed)
    t_r = time.perf_counter() - t0
    bench.add("quant", f"rq_kmeans {levels}x{k} train", t_o * per, t_r * per, "s/10k items",
              f"{n} random 768-d items, {cfg.kmeans_iters} Lloyd iterations per level; ours train_tokenizer "
              "(faiss.Kmeans, + SID table) vs plain numpy Lloyd")


# ----------------------------------------------------------------------------- text encoder


def tiny_sentence_transformer(folder, texts: list[str]):
    """A random 2-layer BERT (+ the mean pooling sentence-transformers adds to a plain folder) saved as a sentence-transformers folder (no download)."""
    import re

    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from genrec.encoders.resolve import ResolvedModel

    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    raw = folder / "bert"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
    BertTokenizerFast(vocab_file=str(raw / "vocab.txt"), do_lower_case=True).save_pretrained(str(raw))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(str(raw))
    SentenceTransformer(str(raw), device="cpu").save(str(folder / "st"))  # plain HF folder -> + mean pooling
    return ResolvedModel("sentence-transformers", folder / "st", "tiny-random-bert", "0", "built in code")


def encoder_section(bench: Bench) -> None:
    from sentence_transformers import SentenceTransformer

    from genrec.config import EncoderConfig
    from genrec.encoders.text import TextEncoder

    d = ml1m_like(bench)
    texts = d.texts[: bench.pick(64, 1024, len(d.texts))]
    info, what = None, ""
    if not bench.quick:
        try:
            from genrec.encoders.resolve import resolve_model

            info, what = resolve_model("minilm-l6", allow_download=False), "all-MiniLM-L6-v2 (local copy)"
        except Exception as e:  # noqa: BLE001 - not cached here
            what = f"minilm-l6 not cached ({type(e).__name__}): "
    if info is None:
        info = tiny_sentence_transformer(bench.workdir / "tiny_st", d.texts)
        what += "tiny random BERT (2 layers, hidden 32)"
    dev = bench.device.type
    enc = TextEncoder(EncoderConfig(name=str(info.path), batch_size=64, max_length=64, device=dev), resolved=info,
                      progress=False)
    enc.encode_raw(texts[:64])  # load + warm up
    ref = SentenceTransformer(str(info.path), device=dev, local_files_only=True)
    ref.max_seq_length = min(64, ref.max_seq_length or 64)
    ref.encode(texts[:64], show_progress_bar=False)
    reps = bench.pick(1, 1, 3)
    t_o, a = bench.time(lambda: enc.encode_raw(texts), repeats=reps, warmup=0)
    t_r, b = bench.time(lambda: ref.encode(texts, show_progress_bar=False, convert_to_numpy=True), repeats=reps,
                        warmup=0)
    diff = float(np.abs(a - b).max())
    bench.add("encoder", "text encoder", len(texts) / t_o, len(texts) / t_r, "texts/s",
              f"{what}; {len(texts)} {d.what} item texts, max_length 64; ours TextEncoder.encode_raw (batch 64, "
              f"length-sorted) vs SentenceTransformer.encode defaults (batch 32); max |diff| {diff:.1e}")
