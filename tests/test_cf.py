"""CF baselines: every registered model trains on the synthetic data and beats popularity; save /
from_pretrained round trips; the switches (DirectSpec, Adap-tau, multi-embedding, faiss) do something."""
from __future__ import annotations

from pathlib import Path
import numpy as np
import pytest
import torch

from genrec.config import load_config
from genrec.errors import ConfigError
from genrec.eval.evaluate import evaluate
from genrec.models.cf import available, build_model, load_pretrained, register
from genrec.pipeline import prepare, run_point

MODELS = ["lightgcn", "mf_bpr", "neumf", "sasrec", "sgl"]
FAST = ["train.epochs=8", "train.lr=0.01", "train.batch_size=512", "train.checkpoint_every=0",
        "train.progress=false", "train.eval_every=2", "cf.max_len=16", "data.n_users=200", "data.n_items=80"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _cfg(tmp_path, *over):
    return load_config([], ["data.source=synthetic", "run.family=cf", f"run.output_dir={tmp_path}", *FAST, *over])


@pytest.fixture(scope="module")
def synth():
    cfg = load_config([], ["data.source=synthetic", "data.n_users=200", "data.n_items=80"])
    data, split = prepare(cfg)
    pop = run_point(load_config([], ["data.source=synthetic", "data.n_users=200", "data.n_items=80",
                                     "run.output_dir=/tmp/genrec-test-pop", "train.progress=false"]), data, split)
    return data, split, pop["metrics"]["recall@10"]


def test_registry_lists_every_model():
    assert available() == MODELS


def test_registry_rejects_bad_names():
    class Dummy:
        pass

    with pytest.raises(ValueError):
        register("Bad-Name", Dummy)
    with pytest.raises(ValueError):
        register("mf_bpr", Dummy)
    with pytest.raises(ConfigError, match="unknown CF model"):
        build_model("nope", load_config([]).cf, 3, 3)


@pytest.mark.parametrize("name", MODELS)
def test_smoke_beats_popularity(tmp_path, synth, name):
    data, split, pop_recall = synth
    loss = ["cf.loss=softmax"] if name == "sasrec" else []
    res = run_point(_cfg(tmp_path, f"run.model={name}", *loss), data, split)
    r10 = res["metrics"]["recall@10"]
    assert r10 > pop_recall + 0.1, f"{name}: recall@10 {r10:.3f} vs popularity {pop_recall:.3f}"
    assert res["extra"]["item_erank"] > 1.0
    assert (Path(res["run_dir"]) / "spectrum.json").exists()


@pytest.mark.parametrize("name", MODELS)
def test_save_from_pretrained_identical_scores(tmp_path, synth, name):
    data, split, _ = synth
    cfg = _cfg(tmp_path, f"run.model={name}", "train.epochs=2")
    model = build_model(name, cfg.cf, data.n_users, data.n_items, cfg.data.max_history, seed=1)
    model.fit(split, cfg.train, tmp_path / "run", device=torch.device("cpu"), eval_cfg=cfg.eval)
    users = torch.as_tensor(split.test.users[:17])
    hists = split.test.histories[:17]
    before = model.score(users, hists)
    model.save_pretrained(tmp_path / "saved")
    again = load_pretrained(tmp_path / "saved")
    assert type(again) is type(model)
    assert torch.equal(again.score(users, hists), before)
    assert again.item_embeddings().shape[0] == data.n_items


def _loss_of(model, split, seed=0):
    model.prepare(split)
    model.train()
    torch.manual_seed(seed)
    batch = next(iter(model.batches(0, 256)))
    return float(model(batch).detach())


@pytest.mark.parametrize("switch", ["cf.directspec=true", "cf.directspec_plus=true", "cf.adap_tau=true"])
def test_switches_change_loss_and_train(tmp_path, synth, switch):
    data, split, pop_recall = synth
    extra = ["cf.directspec=true"] if "plus" in switch else []
    plain = build_model("mf_bpr", _cfg(tmp_path).cf, data.n_users, data.n_items)
    on_cfg = _cfg(tmp_path, "run.model=mf_bpr", switch, *extra)
    on = build_model("mf_bpr", on_cfg.cf, data.n_users, data.n_items)
    assert _loss_of(plain, split) != pytest.approx(_loss_of(on, split), abs=1e-6)
    res = run_point(on_cfg, data, split)
    assert res["metrics"]["recall@10"] > pop_recall + 0.1


def test_adap_tau_updates_per_user_temperatures(synth):
    data, split, _ = synth
    cfg = load_config([], ["cf.adap_tau=true", "cf.dim=16"])
    m = build_model("mf_bpr", cfg.cf, data.n_users, data.n_items)
    m.prepare(split)
    m.train()
    for b in m.batches(0, 128):
        m(b).backward()
    assert m.adap.loss_cnt.sum() == len(split.train_pairs()[0])
    list(m.batches(1, 128))  # epoch 1 start recomputes w_0 and w_u from the epoch-0 losses
    w = m.adap.w
    assert w.shape == (data.n_users,) and torch.isfinite(w).all() and float(w.std()) > 0


def test_adap_tau_update_is_blockwise_and_exact(monkeypatch):
    """AdapTau.update scores the interactions a block at a time (all at once would hold 3 x pairs x d
    floats: ~22 GB on ML-1M at d=2048); the temperatures are bit-identical whatever the block size."""
    import numpy as np

    from genrec.models.cf import losses

    g = torch.Generator().manual_seed(0)
    items_e = torch.randn(40, 32, generator=g)
    users_e = items_e[torch.arange(50) % 40] + 0.5 * torch.randn(50, 32, generator=g)  # like their items
    users = np.repeat(np.arange(50), np.arange(50) % 7 + 1)
    items = (users + np.random.default_rng(0).integers(0, 2, len(users))) % 40
    iu, ii = torch.from_numpy(users), torch.from_numpy(items)
    assert torch.equal(losses.pair_dots(users_e, items_e, iu, ii), (users_e[iu] * items_e[ii]).sum(-1))
    got = []
    for rows in (5, 64, 10**6):
        monkeypatch.setattr(losses, "UPDATE_ROWS", rows)
        at = losses.AdapTau(50, tau=0.2)
        at.record(iu, torch.linspace(0.1, 2.0, len(users)))
        at.update(users_e, items_e, users, items)
        got.append((at.w0, at.w))
    assert got[0][0] != 5.0  # w_0 was recomputed from the data, not left at 1 / tau
    for w0, w in got[1:]:
        assert w0 == got[0][0] and torch.equal(w, got[0][1])


def test_directspec_penalty_prefers_flat_spectrum():
    from genrec.models.cf.losses import directspec_penalty

    flat = torch.eye(8)
    collapsed = torch.ones(8, 8) + 0.01 * torch.randn(8, 8)
    for plus in (False, True):
        assert directspec_penalty(flat, plus) < directspec_penalty(collapsed, plus)


def test_multi_embedding_and_faiss_ranker(tmp_path, synth):
    data, split, pop_recall = synth
    cfg = _cfg(tmp_path, "run.model=mf_bpr", "cf.num_embeddings=4", "cf.dim=32")
    res = run_point(cfg, data, split)
    assert res["metrics"]["recall@10"] > pop_recall + 0.1
    model = load_pretrained(Path(res["run_dir"]) / "model")
    from genrec.models.cf.base import FaissRanker

    a = evaluate(model, split.test, data.n_items, [10, 20])
    b = evaluate(FaissRanker(model), split.test, data.n_items, [10, 20])
    assert a["recall@10"] == pytest.approx(b["recall@10"], abs=0.02)
    assert a["ndcg@20"] == pytest.approx(b["ndcg@20"], abs=0.02)
    with pytest.raises(ConfigError):
        build_model("lightgcn", cfg.cf, 5, 5)  # multi-embedding is MF only


def test_negatives_are_vectorised_and_seeded(synth):
    data, split, _ = synth
    cfg = load_config([], ["cf.num_negatives=3"])
    m = build_model("mf_bpr", cfg.cf, data.n_users, data.n_items, seed=3)
    m.prepare(split)
    a = next(iter(m.batches(0, 64)))
    b = next(iter(m.batches(0, 64)))
    assert a["neg"].shape == (64, 3) and torch.equal(a["neg"], b["neg"])
    assert int(a["neg"].max()) < data.n_items


def test_fit_item_embeddings(synth):
    from genrec.models.cf import fit_item_embeddings

    data, split, _ = synth
    emb = fit_item_embeddings(split, data.n_items, dim=8, seed=0, epochs=2)
    assert isinstance(emb, np.ndarray) and emb.shape == (data.n_items, 8) and emb.dtype == np.float32


def test_pad_left():
    from genrec.models.cf.sasrec import pad_left

    out = pad_left([np.array([5, 6, 7]), np.array([], dtype=np.int64), np.array([1])], 2)
    assert out.tolist() == [[7, 8], [0, 0], [0, 2]]


def test_sampled_softmax_negatives_per_position(synth):
    data, split, _ = synth
    cfg = load_config([], ["cf.loss=sampled_softmax", "cf.num_negatives=7", "cf.shared_negatives=false"])
    m = build_model("sasrec", cfg.cf, data.n_users, data.n_items, seed=0)
    m.prepare(split)
    b = next(iter(m.batches(0, 16)))
    assert b["neg"].shape == (*b["seq"].shape[:1], b["seq"].shape[1] - 1, 7)
    assert torch.isfinite(m(b))


@pytest.mark.parametrize("model,over", [("sasrec", ["cf.normalize=true", "cf.tau=0.05"]),
                                        ("mf_bpr", ["cf.loss=bpr"]),
                                        ("mf_bpr", ["cf.num_embeddings=2", "cf.reg=1e-3"])])
def test_catalogue_scoring_of_row_negatives_matches_gathering(synth, model, over):
    """Per-row negatives are scored either by gathering their rows or, when there are many, by one
    product with the whole catalogue: the loss and its gradients agree whichever path runs."""
    data, split, _ = synth
    loss = "bpr" if "cf.loss=bpr" in over else "sampled_softmax"
    cfg = load_config([], [f"cf.loss={loss}", "cf.num_negatives=5", "cf.shared_negatives=false", *over])
    m = build_model(model, cfg.cf, data.n_users, data.n_items, seed=0)
    m.prepare(split)
    b = next(iter(m.batches(0, 16)))
    out = []
    for ratio in (10 ** 6, 0):  # always the catalogue product, then never
        m.CATALOGUE_RATIO = ratio
        m.eval()  # no dropout: both passes see the same network
        m.zero_grad()
        val = m(b)
        val.backward()
        out.append((val.detach(), [p.grad.clone() for p in m.parameters() if p.grad is not None]))
    (l1, g1), (l2, g2) = out
    assert torch.allclose(l1, l2, rtol=1e-5, atol=1e-6)
    assert len(g1) == len(g2) > 0 and all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(g1, g2))


def test_neumf_full_ranking_scores_equal_its_pair_logits():
    from genrec.models.cf.config import CFConfig
    from genrec.models.cf.neumf import NeuMF

    for widths in (None, [16, 8]):
        m = NeuMF(CFConfig(dim=12, mlp_layers=widths, init_std=0.5), 7, 23, seed=3).eval()
        with torch.no_grad():
            torch.nn.init.normal_(m.out.weight)  # every part of the output layer matters
            users = torch.tensor([0, 4, 6, 2])
            ref = m.pair_logits(users, torch.arange(23))
            assert torch.allclose(m.score(users, None), ref, atol=1e-5)


@pytest.mark.parametrize("keep_share", [1.0, 0.9])  # the full graph, and an SGL edge-dropout view
def test_propagation_backward_uses_the_symmetric_adjacency(monkeypatch, keep_share):
    """LightGCN / SGL propagation: the adjacency is symmetric, and the custom backward (A @ grad, no
    transpose) gives PyTorch's own gradient."""
    import genrec.models.cf.lightgcn as lg

    g = torch.Generator().manual_seed(0)
    users, items = torch.randint(0, 30, (300,), generator=g), torch.randint(0, 50, (300,), generator=g)
    adj = lg.normalized_adjacency(users, items, 30, 50, torch.rand(300, generator=g) < keep_share)
    dense = adj.to_dense()
    assert torch.equal(dense, dense.T)
    x = torch.randn(80, 8, generator=g, dtype=torch.float64).float()
    grads = []
    for symmetric in (True, False):
        monkeypatch.setattr(lg, "SYMMETRIC_BACKWARD", symmetric)
        xx = x.clone().requires_grad_(True)
        out = lg.propagate(adj, xx, 3)
        (out * torch.arange(out.numel()).reshape(out.shape).float().sin()).sum().backward()
        grads.append((out.detach(), xx.grad))
    assert torch.allclose(grads[0][0], grads[1][0]) and torch.allclose(grads[0][1], grads[1][1], atol=1e-6)
    assert grads[0][1].abs().sum() > 0


def test_column_blocked_propagation_gives_the_same_values_and_gradients(monkeypatch):
    """The CPU propagation multiplies SPMM_BLOCK columns at a time (cache blocking): same outputs and
    gradients as one product over the full width, including a last block narrower than the others."""
    import genrec.models.cf.lightgcn as lg

    g = torch.Generator().manual_seed(1)
    users, items = torch.randint(0, 40, (400,), generator=g), torch.randint(0, 60, (400,), generator=g)
    adj = lg.normalized_adjacency(users, items, 40, 60)
    x = torch.randn(100, 20, generator=g)
    weights = torch.randn(100, 20, generator=g)
    runs = {}
    for block in (0, 8):  # 0: one product; 8: blocks of 8, 8 and 4 columns
        monkeypatch.setattr(lg, "SPMM_BLOCK", block)
        monkeypatch.setattr(lg, "SPMM_BLOCK_MIN_BYTES", 0)
        calls = []
        real = torch.sparse.mm
        monkeypatch.setattr(torch.sparse, "mm", lambda a, b: calls.append(b.shape[1]) or real(a, b))
        xx = x.clone().requires_grad_(True)
        out = lg.propagate(adj, xx, 2)
        (out * weights).sum().backward()
        monkeypatch.setattr(torch.sparse, "mm", real)
        runs[block] = (out.detach(), xx.grad, calls)
    assert runs[0][2] == [20] * 4 and runs[8][2] == [8, 8, 4] * 4  # 2 layers forward + 2 backward
    assert torch.allclose(runs[0][0], runs[8][0], atol=1e-6) and torch.allclose(runs[0][1], runs[8][1], atol=1e-6)
    monkeypatch.setattr(lg, "SPMM_BLOCK_MIN_BYTES", x.numel() * 4 + 1)  # a table that fits in cache: one product
    calls = []
    monkeypatch.setattr(torch.sparse, "mm", lambda a, b: calls.append(b.shape[1]) or real(a, b))
    lg.spmm(adj, x)
    assert calls == [20]


@pytest.mark.parametrize("switch", [[], ["cf.adap_tau=true"]], ids=["plain", "adap_tau"])
def test_checkpoint_minutes_lets_a_cut_run_resume_where_it_was(tmp_path, synth, monkeypatch, caplog, switch):
    """train.checkpoint_minutes checkpoints between the train.checkpoint_every ones (here after every epoch):
    a run cut in epoch 3 resumes from epoch 3 and ends with the weights and history of an uncut run. Without
    it (checkpoint_every 100) the cut run has nothing to resume from. It is not part of the run identity.
    Adap-tau: the per-user loss statistics of the epoch before the cut are in the checkpoint, so the resumed
    epoch's temperatures are the uncut run's (without them every user would get w_0 for that epoch)."""
    from genrec.identity import run_id

    data, split, _ = synth
    over = ["run.model=mf_bpr", "train.epochs=6", "train.eval_every=2", "train.patience=0",
            "train.checkpoint_every=100", *switch]

    def fit(cfg, folder, cut_at=-1):
        model = build_model("mf_bpr", cfg.cf, data.n_users, data.n_items, cfg.data.max_history, seed=3)
        real = model.batches

        def batches(epoch, batch_size):
            if epoch == cut_at:
                raise KeyboardInterrupt
            return real(epoch, batch_size)

        monkeypatch.setattr(model, "batches", batches)
        res = model.fit(split, cfg.train, tmp_path / folder, device=torch.device("cpu"), eval_cfg=cfg.eval)
        return model.item_embeddings().detach().clone(), res

    timed = _cfg(tmp_path, *over, "train.checkpoint_minutes=1e-9")
    plain = _cfg(tmp_path, *over)
    assert run_id(timed) == run_id(plain)
    straight, res = fit(plain, "straight")
    for cfg, folder in ((timed, "timed"), (plain, "plain")):
        with pytest.raises(KeyboardInterrupt):
            fit(cfg, folder, cut_at=3)
    assert not (tmp_path / "plain" / "train_state.json").exists()  # only a finished run checkpoints
    resumed, res2 = fit(timed, "timed")
    assert res2.resumed_from_epoch == 3 and res2.epochs_run == 6
    assert [h["loss"] for h in res2.history] == [h["loss"] for h in res.history]
    assert torch.equal(resumed, straight)
    if switch:  # a checkpoint from before the Adap-tau state was saved: resumes, says so, state afresh
        with pytest.raises(KeyboardInterrupt):
            fit(timed, "old", cut_at=3)
        (tmp_path / "old" / "checkpoint" / "extra_state.pt").unlink()
        with caplog.at_level("WARNING", logger="genrec"):
            _, res3 = fit(timed, "old")
        assert res3.resumed_from_epoch == 3 and "has no 'adap_tau' state" in caplog.text


def test_fused_adam_is_the_same_update_up_to_rounding(tmp_path, synth, monkeypatch):
    """train.fused_adam builds PyTorch's fused AdamW and trains the same weights as the default AdamW to
    within float rounding; the setting is part of the run identity (its rounding differs)."""
    from genrec.identity import run_id

    data, split, _ = synth
    made = []
    real = torch.optim.AdamW

    def spy(*a, **kw):
        made.append(kw.get("fused"))
        return real(*a, **kw)

    monkeypatch.setattr(torch.optim, "AdamW", spy)
    weights, ids = {}, {}
    for fused in (False, True):
        cfg = _cfg(tmp_path, "run.model=mf_bpr", "train.epochs=2", "train.eval_every=0", "train.patience=0",
                   f"train.fused_adam={str(fused).lower()}")
        model = build_model("mf_bpr", cfg.cf, data.n_users, data.n_items, cfg.data.max_history, seed=3)
        before = model.item_embeddings().detach().clone()
        model.fit(split, cfg.train, tmp_path / f"run{int(fused)}", device=torch.device("cpu"), eval_cfg=cfg.eval)
        weights[fused] = model.item_embeddings().detach().clone()
        assert not torch.equal(weights[fused], before)  # it trained
        ids[fused] = run_id(cfg)
    assert made == [None, True]
    assert torch.allclose(weights[True], weights[False], atol=1e-4, rtol=1e-4)
    assert ids[True] != ids[False]
