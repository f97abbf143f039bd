"""SID recommender: vectorised examples, KV-cached beam search vs teacher forcing, the family end to end
on the synthetic catalogue (beats popularity, 0 invalid), save/from_pretrained and resume."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from genrec.models.sid.data import PrefixExamples, SequenceWindows, pack_histories
from genrec.models.sid.modeling import SIDRecModel

TINY = dict(num_layers=2, num_decoder_layers=2, d_model=32, num_heads=2, d_kv=16, d_ff=64, dropout=0.0)
RUN = ["run.family=sid", "run.model=tiger", "sid.quantizer=rq_kmeans", "sid.levels=2", "sid.codebook_size=8",
       "sid_model.num_layers=2", "sid_model.num_decoder_layers=2", "sid_model.d_model=48", "sid_model.num_heads=4",
       "sid_model.d_kv=12", "sid_model.d_ff=96", "sid_model.dropout=0.0", "decode.num_beams=20",
       "decode.valid_users=100", "data.max_history=6", "eval.ks=[5,10,20]", "train.epochs=5",
       "train.batch_size=128", "train.lr=5e-3", "train.patience=2", "encoder.name=fake-hash"]


def fake_encode(data, enc_cfg, return_info=False, progress=True):
    """Stand-in for the frozen text encoder (no model download): hashed bag of words of the item text."""
    dim = 48
    words = [t.lower().split() for t in data.item_text]
    vocab = sorted({w for ws in words for w in ws})
    col = {w: int(hashlib.md5(w.encode()).hexdigest(), 16) % dim for w in vocab}
    emb = np.zeros((len(words), dim), np.float32)
    for i, ws in enumerate(words):
        for w in ws:
            emb[i, col[w]] += 1.0 if not w.isdigit() else 0.3
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    info = {"model_id": "fake-hash", "revision": "0", "file": "fake.npy", "encode_s": 0.0}
    return (emb, info) if return_info else emb


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture
def fake_encoder(monkeypatch):
    monkeypatch.setattr("genrec.encoders.encode_items", fake_encode)


def random_codes(n, levels, card, seed=0):
    rng = np.random.default_rng(seed)
    codes = set()
    while len(codes) < n:
        codes.add(tuple(int(x) for x in rng.integers(0, card, levels)))
    return np.array(sorted(codes))


def test_prefix_examples_vectorised():
    seqs = [np.array([5, 6, 7, 8]), np.array([1]), np.array([2, 3])]
    ex = PrefixExamples(seqs, max_history=2)
    assert len(ex) == 3 + 0 + 1
    users, hist, tgt = ex.build(np.arange(len(ex)))
    assert users.tolist() == [0, 0, 0, 2]
    assert hist.tolist() == [[-1, 5], [5, 6], [6, 7], [-1, 2]]
    assert tgt.tolist() == [6, 7, 8, 3]
    assert pack_histories([np.array([1, 2, 3]), np.array([], dtype=np.int64)], 2).tolist() == [[2, 3], [-1, -1]]
    a, b = ex.epoch_order(0, seed=1, n_sample=2), ex.epoch_order(0, seed=1, n_sample=2)
    assert len(a) == 2 and np.array_equal(a, b)


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only"])
def test_cached_beam_scores_equal_teacher_forcing(arch):
    rng = np.random.default_rng(0)
    codes = random_codes(60, 3, 5)
    torch.manual_seed(0)
    model = SIDRecModel.from_codes(codes, [5, 5, 5], rng.normal(size=(60, 8)).astype(np.float32), arch=arch,
                                   n_user_tokens=7, max_history=4, num_beams=12, **TINY).eval()
    users = torch.tensor([0, 1, 2])
    hist = torch.tensor([[-1, -1, 3, 4], [1, 2, 3, 4], [-1, -1, -1, 9]])
    items, scores = model.beam_search(users, hist, 12)
    assert (items >= 0).all() and all(len(set(r)) == 12 for r in items.tolist())
    assert torch.allclose(model.item_logprob(users, hist, items), scores, atol=1e-4)
    # with beams >= catalogue size the search is exhaustive: the best item is the teacher-forced argmax
    full = model.item_logprob(users, hist, torch.arange(60).expand(3, -1))
    items60, _ = model.beam_search(users, hist, 60)
    assert torch.equal(items60[:, 0], full.argmax(1))
    with pytest.raises(ValueError, match="num_beams"):
        model.recommend(users, [np.array([3, 4])] * 3, k=13)


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only"])
def test_recommend_excludes_inside_search_equals_exhaustive_on_unseen(arch):
    """Ranking rule: exclude= bans items inside the beam search; lists are full (min(k, unseen items)) and,
    with beams covering the catalogue, equal exhaustive scoring restricted to unseen items."""
    codes = random_codes(30, 2, 6, seed=1)
    torch.manual_seed(1)
    model = SIDRecModel.from_codes(codes, [6, 6], None, arch=arch, max_history=4, num_beams=30,
                                   decode_batch_size=2, **TINY).eval()
    rng = np.random.default_rng(2)
    histories = [rng.choice(30, size=s, replace=False) for s in (0, 3, 12, 29, 30)]
    users = torch.arange(5)
    hist = pack_histories(histories, 4)
    full = model.item_logprob(users, hist, torch.arange(30).expand(5, -1))
    for u, h in enumerate(histories):
        full[u, torch.as_tensor(h, dtype=torch.long)] = float("-inf")
    unseen = torch.isfinite(full).sum(1)
    order = torch.sort(full, dim=1, descending=True, stable=True)
    want = torch.where(torch.isfinite(order.values), order.indices, -1)
    assert torch.equal(model.recommend(users, histories, 30, exclude=histories), want)
    model.config.num_beams = 10
    top = model.recommend(users, histories, 10, exclude=histories)
    assert torch.equal((top >= 0).sum(1), unseen.clamp(max=10))
    for row, h in zip(top.tolist(), histories):
        real = [i for i in row if i >= 0]
        assert len(set(real)) == len(real) and not set(real) & set(h.tolist())
    assert torch.equal(top[:, 0], want[:, 0])  # the best unseen item is found with fewer beams here
    plain = model.recommend(users, histories, 10)  # no exclusion: full lists, history items allowed
    assert (plain >= 0).all()


def _run_beats_popularity(make_cfg, cfg) -> dict:
    """Run the SID point; it returns only real items and beats popularity by 0.05 recall@10."""
    from genrec.pipeline import run_point

    res = run_point(cfg)
    pop = run_point(make_cfg("run.family=baseline", "run.model=popularity", "eval.ks=[5,10,20]"))
    m, p = res["metrics"], pop["metrics"]
    assert m["invalid_rate"] == 0.0
    assert m["recall@10"] > p["recall@10"] + 0.05, (m["recall@10"], p["recall@10"])
    return res


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only"])
def test_family_beats_popularity_and_round_trips(make_cfg, fake_encoder, arch):
    from genrec.pipeline import run_point

    cfg = make_cfg(*RUN, f"sid_model.arch={arch}")
    res = _run_beats_popularity(make_cfg, cfg)
    ex = res["extra"]
    assert {"collision_rate", "codebook_util", "codebook_perplexity", "recon_error"} <= set(ex)
    assert res["params"]["params_total"] > res["params"]["params_non_embedding"] > 0
    json.dumps(ex, default=str)
    # save_pretrained / from_pretrained: identical recommendations
    from genrec.data import load_data, split_data

    data = load_data(cfg.data)
    test = split_data(data, cfg.data).test.head(40)
    users = torch.as_tensor(test.users)
    loaded = SIDRecModel.from_pretrained(ex["model_dir"]).eval()
    torch.manual_seed(0)
    a = loaded.recommend(users, test.histories, 20)
    # resume: the same config again finds the finished checkpoint and does not retrain
    res2 = run_point(cfg)
    assert res2["extra"]["resumed_from_epoch"] == res["extra"]["epochs_run"]
    assert res2["metrics"]["recall@10"] == res["metrics"]["recall@10"]
    b = SIDRecModel.from_pretrained(res2["extra"]["model_dir"]).eval().recommend(users, test.histories, 20)
    assert torch.equal(a, b) and (a[:, 0] >= 0).all()


@pytest.mark.slow
def test_interrupted_training_resumes(tmp_path, synthetic):
    from genrec.config import load_config
    from genrec.train import train_loop

    cfg, data, split = synthetic
    tcfg = load_config([], ["train.epochs=3", "train.progress=false", "train.batch_size=64"]).train
    codes = random_codes(data.n_items, 3, 6)
    ex = PrefixExamples(split.train, 5)

    def fresh():
        torch.manual_seed(0)
        return SIDRecModel.from_codes(codes, [6, 6, 6], None, max_history=5, num_beams=10, **TINY)

    def batches(stop_at):
        def make(ep):
            if ep == stop_at:
                raise KeyboardInterrupt
            return ex.batches(ep, 64, seed=0, n_sample=256)
        return make

    with pytest.raises(KeyboardInterrupt):
        train_loop(fresh(), lambda m, b: m(*b), batches(2), tcfg, tmp_path / "a")
    resumed = train_loop(fresh(), lambda m, b: m(*b), batches(-1), tcfg, tmp_path / "a")
    assert resumed.resumed_from_epoch == 2 and resumed.epochs_run == 3
    straight = train_loop(fresh(), lambda m, b: m(*b), batches(-1), tcfg, tmp_path / "b")
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history], rel=1e-5)


def test_bad_configs_fail_clearly(make_cfg, fake_encoder):
    from genrec.errors import ConfigError
    from genrec.pipeline import run_point

    with pytest.raises(ConfigError, match="num_beams"):
        run_point(make_cfg("run.family=sid", "run.model=tiger", "decode.num_beams=10", "eval.ks=[5,20]"))
    with pytest.raises(ConfigError, match="divisible"):
        run_point(make_cfg("run.family=sid", "run.model=tiger", "sid_model.arch=decoder_only", "eval.ks=[5,10]"))
    with pytest.raises(ConfigError, match="decoder_only"):
        run_point(make_cfg("run.family=sid", "run.model=tiger", "sid_model.train_mode=sequence", "eval.ks=[5,10]"))
    with pytest.raises(ConfigError, match="unknown key"):
        make_cfg("sid_model.beams=3")


# ----------------------------------------------------------------------------- sequence-parallel training


def test_sequence_windows_last_and_seeded_crops():
    seqs = [np.arange(10, 20), np.array([1]), np.array([2, 3]), np.arange(30, 34)]
    last = SequenceWindows(seqs, max_history=3, window="last")
    assert len(last) == 3 and last.user.tolist() == [0, 2, 3]  # user 1 has no target
    users, win = next(last.batches(0, batch_size=10, seed=0))
    got = {int(u): w.tolist() for u, w in zip(users, win)}
    assert got == {0: [16, 17, 18, 19], 2: [-1, -1, 2, 3], 3: [30, 31, 32, 33]}
    assert last.targets_per_epoch() == 3 + 1 + 3
    crop = SequenceWindows(seqs, max_history=3, window="random")
    ends = [crop.window_ends(ep, seed=5) for ep in range(8)]
    assert np.array_equal(ends[0], crop.window_ends(0, seed=5))  # seeded
    u0 = [e[0] for e in ends]  # user 0: 10 items, windows of 4 end anywhere in [4, 10]
    assert all(4 <= e <= 10 for e in u0) and len(set(u0)) > 1
    assert all(e[1] == 13 and e[2] == 17 for e in ends)  # shorter sequences: always the whole sequence
    for ep in range(3):
        for u, w in zip(*next(crop.batches(ep, 10, seed=5))):
            w = w[w >= 0].numpy()
            seq = seqs[int(u)]
            start = int(np.flatnonzero(seq == w[0])[0])
            assert np.array_equal(seq[start:start + len(w)], w)  # a run of consecutive items


@pytest.mark.parametrize("user_tokens,inject", [(0, False), (5, True)])
def test_sequence_loss_equals_mean_of_prefix_losses(user_tokens, inject):
    """Masking convention: the sequence loss is the mean over every SID token of every window item but
    the first; a prefix example (history = the window's items before k, target item k) has the same
    number of tokens, so it equals the mean of the per-prefix losses of the same windows."""
    rng = np.random.default_rng(0)
    codes = random_codes(40, 3, 5)
    vec = rng.normal(size=(40, 6)).astype(np.float32) if inject else None
    torch.manual_seed(0)
    model = SIDRecModel.from_codes(codes, [5, 5, 5], vec, arch="decoder_only", train_mode="sequence",
                                   n_user_tokens=user_tokens, max_history=5, num_beams=5, **TINY).eval()
    seqs = [rng.choice(40, size=n, replace=False) for n in (9, 2, 6, 4)]
    users, win = next(SequenceWindows(seqs, max_history=5, window="last").batches(0, 10, seed=0))
    seq_loss = model(users, win)
    pu, ph, pt = [], [], []
    for u, w in zip(users.tolist(), win.numpy()):
        w = w[w >= 0]
        for k in range(1, len(w)):
            pu.append(u)
            ph.append(w[:k])
            pt.append(int(w[k]))
    per_prefix = [model(torch.tensor([u]), pack_histories([h], 5), torch.tensor([t])) for u, h, t in zip(pu, ph, pt)]
    assert seq_loss.item() == pytest.approx(torch.stack(per_prefix).mean().item(), rel=1e-5, abs=1e-6)
    batched = model(torch.tensor(pu), pack_histories(ph, 5), torch.tensor(pt))  # left-padded prefixes
    assert seq_loss.item() == pytest.approx(batched.item(), rel=1e-5, abs=1e-6)
    # beam search on the same prompt layout: cached scores equal teacher forcing
    items, scores = model.beam_search(users, pack_histories([w[w >= 0].numpy() for w in win], 5), 5)
    assert torch.allclose(model.item_logprob(users, pack_histories([w[w >= 0].numpy() for w in win], 5), items),
                          scores, atol=1e-4)


@pytest.mark.slow
def test_sequence_training_beats_popularity(make_cfg, fake_encoder):
    from genrec.pipeline import run_point

    run = [a for a in RUN if not a.startswith("train.batch_size")]
    cfg = make_cfg(*run, "sid_model.arch=decoder_only", "sid_model.train_mode=sequence", "train.batch_size=32",
                   "sid_model.user_tokens=4", "sid_model.inject=cf", "sid_model.inject_cf_dim=8",
                   "sid_model.inject_cf_epochs=3")
    ex = _run_beats_popularity(make_cfg, cfg)["extra"]
    assert ex["train_mode"] == "sequence" and ex["targets_per_epoch"] > ex["train_examples"]
    from genrec.models.cf.family import mf_bpr_settings

    assert ex["inject_cf"] == mf_bpr_settings(8, 3, 0)  # the CF family's MF-BPR, as in the LLM family
    loaded = SIDRecModel.from_pretrained(ex["model_dir"])
    assert loaded.config.train_mode == "sequence"


# ----------------------------------------------------------------------------- one config class


def test_sid_model_section_keys_are_the_config_keywords(make_cfg):
    import dataclasses
    import inspect

    from genrec.errors import ConfigError
    from genrec.models.sid.configuration import SIDRecConfig

    cfg = make_cfg("sid_model.arch=decoder_only", "sid_model.num_heads=4", "sid_model.user_tokens=3")
    keys = [k for k in inspect.signature(SIDRecConfig.__init__).parameters if k not in ("self", "kwargs")]
    assert [f.name for f in dataclasses.fields(cfg.sid_model)] == keys
    conf = SIDRecConfig(**dataclasses.asdict(cfg.sid_model))
    assert (conf.arch, conf.num_heads, conf.user_tokens, conf.n_user_tokens) == ("decoder_only", 4, 3, 3)
    for bad, msg in [("sid_model.dropout=1.5", "sid_model: dropout"), ("sid_model.arch=rnn", "sid_model.arch"),
                     ("sid_model.num_layers=0", "num_layers must be >= 1")]:
        with pytest.raises(ConfigError, match=msg) as e:
            make_cfg(bad)  # each value is checked as its layer is read
        assert "\n" not in str(e.value)
    from genrec.family import get_family

    # keys that go together are checked on the merged config: --set layers may pass through a bad pair
    ok = make_cfg("run.family=sid", "run.model=tiger", "eval.ks=[5,10]", "sid_model.arch=decoder_only",
                  "sid_model.num_heads=4", "sid_model.train_mode=sequence")
    get_family("sid").check(ok)
    for bad, msg in [("sid_model.train_mode=sequence", "sid_model: train_mode=sequence .* needs arch=decoder_only"),
                     ("sid_model.arch=decoder_only", "sid_model: .* divisible by num_heads")]:
        with pytest.raises(ConfigError, match=msg):
            get_family("sid").check(make_cfg("run.family=sid", "run.model=tiger", "eval.ks=[5,10]", bad))
    with pytest.raises(ValueError, match="divisible"):
        SIDRecConfig(arch="decoder_only", d_model=30, num_heads=4)


def test_saved_folder_loads_with_auto_classes(tmp_path):
    from transformers import AutoConfig, AutoModel

    from genrec.models.sid.configuration import SIDRecConfig

    torch.manual_seed(0)
    model = SIDRecModel.from_codes(random_codes(30, 2, 6), [6, 6], None, arch="decoder_only", train_mode="sequence",
                                   n_user_tokens=3, max_history=4, num_beams=7, **TINY).eval()
    model.save_pretrained(tmp_path / "m")
    conf = AutoConfig.from_pretrained(tmp_path / "m")
    assert isinstance(conf, SIDRecConfig)
    assert (conf.num_beams, conf.train_mode, conf.user_tokens, conf.n_items) == (7, "sequence", 3, 30)
    loaded = AutoModel.from_pretrained(tmp_path / "m").eval()
    assert isinstance(loaded, SIDRecModel)
    users, hist = torch.tensor([0, 1]), torch.tensor([[-1, 2, 3, 4], [5, 6, 7, 8]])
    items = torch.arange(30).expand(2, -1)
    assert torch.allclose(loaded.item_logprob(users, hist, items), model.item_logprob(users, hist, items))


# ----------------------------------------------------------------------------- compute accounting


def test_token_count_by_hand():
    from types import SimpleNamespace

    from genrec.models.sid.data import TokenCount

    def config(arch, user_tokens):
        return SimpleNamespace(n_levels=2, user_tokens=user_tokens, arch=arch, num_layers=2, num_decoder_layers=3,
                               num_heads=2, d_kv=8)

    users, hist, tgt = torch.tensor([0, 1]), torch.tensor([[-1, 4, 5], [3, 4, 5]]), torch.tensor([6, 7])
    ed = TokenCount(config("encoder_decoder", 4))
    ed.add((users, hist, tgt))  # encoder 1 + 2 x 2 = 5 and 1 + 3 x 2 = 7 positions, decoder 2 + 2
    assert ed.tokens == 5 + 7 + 4
    assert ed.attended == 2 * (5 * 5 + 7 * 7) + 3 * ((3 + 2 * 5) + (3 + 2 * 7))
    assert ed.extra() == {"train_tokens": 16, "n_layers": 5, "context": round(238 / 80, 3), "d_attn": 16}
    do = TokenCount(config("decoder_only", 4))
    do.add((users, hist, tgt))  # [user] 2 or 3 items x 2 BOS + 2 target tokens: 8 and 10, causal
    assert (do.tokens, do.attended) == (18, 2 * (8 * 9 / 2 + 10 * 11 / 2))
    seq = TokenCount(config("decoder_only", 0))
    seq.add((users, hist))  # BOS + the window's tokens: 5 and 7
    seq.add((users[:1], hist[:1]))
    assert (seq.tokens, seq.attended) == (17, 2 * (15 + 28 + 15))
    assert seq.extra()["context"] == round(58 / 17, 3)


@pytest.mark.parametrize("arch,mode", [("encoder_decoder", "prefix"), ("decoder_only", "prefix"),
                                       ("decoder_only", "sequence")])
def test_token_count_equals_the_model_mask(arch, mode):
    from genrec.models.sid.data import TokenCount

    model = SIDRecModel.from_codes(random_codes(8, 2, 4), [4, 4], None, max_history=3, num_beams=4, arch=arch,
                                   train_mode=mode, user_tokens=3, **TINY)
    users, hist = torch.tensor([0, 1, 2]), torch.tensor([[-1, -1, 4], [-1, 2, 5], [3, 4, 5]])
    batch = (users, hist) if mode == "sequence" else (users, hist, torch.tensor([6, 7, 1]))
    count = TokenCount(model.config)
    count.add(batch)
    _, mask, _ = model._prompt(users, hist, bos=arch == "decoder_only")
    assert count.tokens == int(mask.sum()) + (0 if mode == "sequence" else 2 * len(users))


def test_sid_run_records_training_compute(make_cfg, fake_encoder):
    from genrec.data import load_data, split_data
    from genrec.pipeline import run_point
    from genrec.scaling.leaderboard import make_row

    run = [a for a in RUN if not a.startswith(("train.epochs", "train.batch_size"))]
    cfg = make_cfg(*run, "sid_model.arch=decoder_only", "sid_model.train_mode=sequence",
                   "sid_model.sequence_window=last", "train.epochs=2", "train.patience=0", "train.batch_size=64")
    res = run_point(cfg)
    ex = res["extra"]
    split = split_data(load_data(cfg.data), cfg.data)
    lens = np.array([len(s) for s in split.train])
    lens = np.minimum(lens[lens >= 2], cfg.data.max_history + 1)  # one window of the last items per user
    per_epoch = int((1 + lens * ex["sid_n_levels"]).sum())  # BOS + each item's SID tokens
    assert res["train_tokens"] == ex["train_tokens"] == per_epoch * ex["epochs_run"] == per_epoch * 2
    assert ex["n_layers"] == 2 and ex["d_attn"] == 4 * 12 and 1 < ex["context"] < per_epoch
    n = res["params"]["params_non_embedding"]
    expect = 6 * n * res["train_tokens"] + 6 * 2 * ex["context"] * 48 * res["train_tokens"]
    assert res["train_flops"] == pytest.approx(expect) and res["train_flops"] > 0
    assert make_row(cfg, res)["train_flops"] == res["train_flops"]
    again = run_point(cfg)  # a finished run resumed: the same totals, rebuilt from the seeded batches
    assert again["extra"]["resumed_from_epoch"] == 2 and again["train_tokens"] == res["train_tokens"]
