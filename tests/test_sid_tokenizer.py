"""SID tokenizer: table statistics, disambiguation, quantizers (RQ-VAE, residual k-means), persistence, cache."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from genrec.errors import ConfigError, DataError
from genrec.sid import SIDConfig, SIDTokenizer, get_tokenizer, train_tokenizer
from genrec.sid.configuration_rqvae import RQVAEConfig
from genrec.sid.modeling_rqvae import RQVAEModel, fit_rqvae, kmeans_torch
from genrec.sid.table import code_stats, collision_groups, disambiguate

ROOT = Path(__file__).resolve().parents[1]
HAND = np.array([[0, 1], [0, 1], [1, 2], [3, 0], [1, 2], [1, 2]])


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread, and much faster on a shared 2-core machine; restored after."""
    import faiss

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(before)
    faiss.omp_set_num_threads(before)


def _emb(n=240, d=16, seed=0):
    """Clustered, low-rank item embeddings: learnable structure for the quantizers."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, 4))
    z = centres[rng.integers(0, 12, n)] + 0.3 * rng.normal(size=(n, 4))
    return (z @ rng.normal(size=(4, d)) / 2 + 0.05 * rng.normal(size=(n, d))).astype(np.float32)


def _cfg(**kw):
    base = dict(levels=2, codebook_size=8, latent_dim=4, hidden_dims=[16], epochs=4, batch_size=64, lr=3e-3)
    base.update(kw)
    return SIDConfig(**base)


def test_stats_on_hand_made_table():
    s = code_stats(HAND, codebook_size=4)
    assert s["collision_rate"] == pytest.approx(5 / 6)  # only item 3 has a unique tuple
    assert s["max_group_size"] == 3 and s["n_unique_sids"] == 3
    assert s["codebook_util_per_level"] == [0.75, 0.75]
    p0 = np.array([2, 3, 1]) / 6  # level 0 uses code 0 twice, 1 three times, 3 once
    assert s["codebook_perplexity_per_level"][0] == pytest.approx(math.exp(-(p0 * np.log(p0)).sum()))
    assert s["codebook_perplexity_per_level"][1] == pytest.approx(math.exp(-(p0 * np.log(p0)).sum()))
    assert s["codebook_util"] == pytest.approx(0.75)
    sizes, rank = collision_groups(HAND)
    assert sizes.tolist() == [2, 2, 3, 1, 3, 3] and rank.tolist() == [0, 1, 0, 0, 1, 2]
    assert code_stats(np.array([[0], [1], [2]]), 4)["collision_rate"] == 0.0
    with pytest.raises(DataError):
        code_stats(np.array([[0, 5]]), 4)


def test_disambiguation_is_a_bijection():
    codes = disambiguate(HAND)
    assert codes[:, 2].tolist() == [0, 1, 0, 0, 1, 2]
    assert len(np.unique(codes, axis=0)) == len(HAND)
    tok = SIDTokenizer(HAND, None, SIDConfig(levels=2, codebook_size=4))
    assert tok.n_levels == 3 and tok.vocab_sizes == [4, 4, 3] and tok.codes.dtype == np.int64
    items = np.arange(len(HAND))
    assert np.array_equal(tok.sid_to_item(tok.item_to_sid(items)), items)
    assert tok.sid_to_item(np.array([[0, 1, 2], [3, 0, 1], [9, 0, 0], [-1, 0, 0]])).tolist() == [-1] * 4
    with pytest.raises(ConfigError, match="disambiguate"):
        SIDTokenizer(HAND, None, SIDConfig(levels=2, codebook_size=4, disambiguate=False))
    loose = SIDTokenizer(HAND, None, SIDConfig(levels=2, codebook_size=4, disambiguate=False), allow_collisions=True)
    assert loose.n_levels == 2 and loose.sid_to_item(HAND).tolist() == [0, 0, 2, 3, 2, 2]


@pytest.mark.parametrize("quantizer", ["rqvae", "rq_kmeans"])
def test_save_from_pretrained_round_trip(tmp_path, quantizer):
    x = _emb()
    tok = train_tokenizer(x, _cfg(quantizer=quantizer), seed=0, encoder_id="enc-x", cache_key="key-1",
                          progress=False)
    tok.save_pretrained(tmp_path / "tok")
    for name in ("config.json", "codes.safetensors", "stats.json", "tokenizer_card.md", "quantizer"):
        assert (tmp_path / "tok" / name).exists()
    back = SIDTokenizer.from_pretrained(tmp_path / "tok")
    assert np.array_equal(back.codes, tok.codes) and back.codes.dtype == np.int64
    assert back.stats == tok.stats and back.vocab_sizes == tok.vocab_sizes
    assert back.sid_config == tok.sid_config and (back.encoder_id, back.cache_key) == ("enc-x", "key-1")
    assert np.array_equal(back.encode(x), tok.raw_codes)
    assert np.array_equal(back.encode(x), tok.codes[:, : tok.levels])
    assert np.array_equal(back.reconstruct(tok.codes), tok.reconstruct(tok.codes))
    for key in ("collision_rate", "codebook_util", "codebook_perplexity", "recon_error",
                "codebook_util_per_level", "codebook_perplexity_per_level"):
        assert key in back.stats
    expected = np.mean((tok.reconstruct(tok.raw_codes).astype(np.float64) - x) ** 2)
    assert back.stats["recon_error"] == pytest.approx(expected)


def test_rqvae_reconstruction_improves_with_training():
    x = _emb()
    torch.manual_seed(0)
    model = RQVAEModel(RQVAEConfig(input_dim=16, hidden_dims=[32], latent_dim=4, levels=2, codebook_size=8))
    hist = fit_rqvae(model, x, epochs=12, batch_size=32, lr=3e-3, seed=0, progress=False)
    assert hist["recon_loss"][-1] < 0.5 * hist["recon_loss"][0]


def test_dead_code_restart_revives_collapsed_codebook():
    x = _emb()
    cfg = RQVAEConfig(input_dim=16, hidden_dims=[16], latent_dim=4, levels=2, codebook_size=8)

    def level0_util(restart):
        torch.manual_seed(0)
        model = RQVAEModel(cfg)
        model.codebooks.data[:] = 10.0  # collapsed: every code identical, so only code 0 is ever picked
        fit_rqvae(model, x, epochs=3, batch_size=64, lr=1e-3, seed=0, kmeans_init=False,
                  dead_code_restart=restart, progress=False)
        return len(np.unique(model.encode_codes(x)[:, 0])) / cfg.codebook_size

    assert level0_util(False) == 1 / 8
    assert level0_util(True) >= 0.75


def test_kmeans_init_and_kmeans_torch():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, 3)) * 10
    pts = torch.tensor(np.repeat(centres, 20, axis=0) + rng.normal(size=(80, 3)) * 0.1, dtype=torch.float32)
    found, assign = kmeans_torch(pts, 4, 20, torch.Generator().manual_seed(0))
    err = torch.cdist(torch.tensor(centres, dtype=torch.float32), found).min(1).values
    assert err.max() < 0.2 and len(assign.unique()) == 4
    x = _emb()
    torch.manual_seed(0)
    model = RQVAEModel(RQVAEConfig(input_dim=16, hidden_dims=[16], latent_dim=4, levels=2, codebook_size=8))
    xt = torch.tensor(x)
    res_before, _ = model.residuals(xt)
    model.kmeans_init(xt, 20, torch.Generator().manual_seed(0))
    res, codes = model.residuals(xt)
    # level-0 codebook = k-means centres of the latents: every code used, level-0 error well below random codes
    assert len(codes[:, 0].unique()) == 8
    err_km = (res[0] - model.codebooks[0][codes[:, 0]]).pow(2).mean()
    assert err_km < 0.5 * res[0].var(0).sum() / 4 and torch.equal(res_before[0], res[0])


def test_same_seed_is_deterministic_and_seed_matters():
    x = _emb()
    a = train_tokenizer(x, _cfg(), seed=3, progress=False)
    b = train_tokenizer(x, _cfg(), seed=3, progress=False)
    c = train_tokenizer(x, _cfg(), seed=4, progress=False)
    assert np.array_equal(a.codes, b.codes)
    assert all(torch.equal(p, q) for p, q in zip(a.quantizer.state_dict().values(),
                                                 b.quantizer.state_dict().values()))
    assert not torch.equal(a.quantizer.codebooks, c.quantizer.codebooks)
    k1 = train_tokenizer(x, _cfg(quantizer="rq_kmeans"), seed=3, progress=False)
    k2 = train_tokenizer(x, _cfg(quantizer="rq_kmeans"), seed=3, progress=False)
    assert np.array_equal(k1.codes, k2.codes) and np.array_equal(k1.quantizer.codebooks, k2.quantizer.codebooks)


def test_automodel_round_trip(tmp_path):
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    model = RQVAEModel(RQVAEConfig(input_dim=16, hidden_dims=[16, 8], latent_dim=4, levels=3, codebook_size=8))
    model.save_pretrained(tmp_path / "m")
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "m"), RQVAEConfig)
    back = AutoModel.from_pretrained(tmp_path / "m")
    assert isinstance(back, RQVAEModel) and back.config.hidden_dims == [16, 8]
    for k, v in model.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    x = torch.tensor(_emb())
    model.eval()
    back.eval()
    assert torch.equal(model(x).codes, back(x).codes)


def test_stage_cache_and_tokenizer_path(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREC_CACHE", str(tmp_path / "cache"))
    x = _emb()
    cfg = _cfg(quantizer="rq_kmeans")
    first = get_tokenizer(x, cfg, seed=0, encoder_id="enc", cache_key="k", progress=False)
    folders = list((tmp_path / "cache" / "tokenizers").iterdir())
    assert len(folders) == 1 and (folders[0] / "stats.json").is_file()
    again = get_tokenizer(x, cfg, seed=0, encoder_id="enc", cache_key="k", progress=False)
    assert np.array_equal(first.codes, again.codes) and again.stats == first.stats
    get_tokenizer(x, cfg, seed=1, progress=False)  # another seed: another folder
    assert len([p for p in (tmp_path / "cache" / "tokenizers").iterdir() if not p.name.startswith(".")]) == 2
    fixed = SIDConfig(**{**cfg.__dict__, "tokenizer_path": str(folders[0])})
    assert np.array_equal(get_tokenizer(x, fixed, seed=0).codes, first.codes)
    with pytest.raises(DataError, match="items"):
        get_tokenizer(x[:-1], fixed, seed=0)


def test_bad_inputs_fail_clearly():
    with pytest.raises(DataError):
        train_tokenizer(np.zeros((3, 4), np.float32), _cfg(quantizer="rq_kmeans"), seed=0)  # fewer items than codes
    with pytest.raises(DataError):
        train_tokenizer(np.full((10, 4), np.nan, np.float32), _cfg(), seed=0)
    with pytest.raises(ConfigError):
        get_tokenizer(_emb(), _cfg(tokenizer_path="/nonexistent/tok"), seed=0)


def test_sid_configs_load_and_tokenizers_folder_has_no_python():
    import tokenizers

    from genrec.config import load_config

    assert "site-packages" in str(Path(tokenizers.__file__))  # HuggingFace's, not the repo's data folder
    assert not list((ROOT / "tokenizers").rglob("*.py")) if (ROOT / "tokenizers").exists() else True
    vae = load_config([str(ROOT / "configs/sid/rqvae-3x256.yaml")]).sid
    km = load_config([str(ROOT / "configs/sid/rq-kmeans-3x256.yaml")]).sid
    assert (vae.quantizer, vae.levels, vae.codebook_size) == ("rqvae", 3, 256)
    assert (km.quantizer, km.levels, km.codebook_size) == ("rq_kmeans", 3, 256)


def test_rqvae_device_key_and_cuda_when_present():
    from genrec.sid.tokenizer import tokenizer_hash

    x = _emb()
    # the default (cpu) keeps the cache hashes of tokenizers trained before the key existed; another device
    # trains (slightly) different weights, so it gets its own cache entry
    assert tokenizer_hash(x, _cfg(), 0) == tokenizer_hash(x, _cfg(device="cpu"), 0)
    assert tokenizer_hash(x, _cfg(), 0) != tokenizer_hash(x, _cfg(device="cuda"), 0)
    a = train_tokenizer(x, _cfg(), seed=3, progress=False)
    b = train_tokenizer(x, _cfg(device="auto"), seed=3, progress=False)  # cpu here; cuda where present
    assert b.quantizer.codebooks.device.type == "cpu"  # handed back on the CPU either way
    if not torch.cuda.is_available():
        assert np.array_equal(a.codes, b.codes)
