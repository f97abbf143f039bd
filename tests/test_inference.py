"""genrec.inference: load_run(run_dir).recommend(raw ids) for every family equals the in-process model's top-k
(the evaluator's ranking rule, history banned); CF Auto classes; push_to_hub with a patched upload; loading
from a Hub snapshot folder; model cards with the metrics."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from genrec.errors import ConfigError, DataError

SMALL = ["data.n_users=40", "data.n_items=24", "data.seq_len=8", "eval.ks=[5,10]", "eval.max_users=16",
         "train.epochs=2"]
SID = ["run.family=sid", "run.model=tiger", "sid.quantizer=rq_kmeans", "sid.levels=2", "sid.codebook_size=4",
       "sid_model.arch=decoder_only", "sid_model.num_layers=1", "sid_model.d_model=16", "sid_model.num_heads=2",
       "sid_model.d_kv=8", "sid_model.d_ff=32", "sid_model.dropout=0.0", "decode.num_beams=10",
       "decode.valid_users=8", "data.max_history=5", "train.batch_size=64", "encoder.name=fake-hash"]
LLM = ["run.family=llm", "run.model=lora", "decode.valid_users=4", "llm.history_items=3", "llm.lora_rank=4",
       "decode.num_beams=10", "decode.batch_size=16", "train.batch_size=16", "train.epochs=1",
       "llm.steps_per_epoch=2"]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def fake_encode(data, enc_cfg, return_info=False, progress=True):
    """Stand-in text encoder (no download): hashed bag of words of the item text."""
    emb = np.zeros((len(data.item_text), 16), np.float32)
    for i, text in enumerate(data.item_text):
        for w in text.lower().split():
            emb[i, sum(map(ord, w)) % 16] += 1.0
    emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-8
    info = {"model_id": "fake-hash", "revision": "0", "file": "fake.npy", "encode_s": 0.0}
    return (emb, info) if return_info else emb


def run_and_keep_model(make_cfg, monkeypatch, *overrides):
    """run_point on the small synthetic data; returns (cfg, result, the in-process model, data, split)."""
    import genrec.pipeline as pipeline

    seen, real = {}, pipeline.evaluate

    def spy(model, *args, **kwargs):
        seen["model"] = model
        return real(model, *args, **kwargs)

    monkeypatch.setattr(pipeline, "evaluate", spy)
    cfg = make_cfg(*SMALL, *overrides)
    res = pipeline.run_point(cfg)
    data, split = pipeline.prepare(cfg)
    return cfg, res, seen["model"], data, split


@torch.no_grad()
def reference_top(model, users, histories, k: int) -> list[list[int]]:
    """The evaluator's rule: scores with every history item masked, or recommend(exclude=histories)."""
    users = torch.as_tensor(users)
    if hasattr(model, "score"):
        s = model.score(users, histories).float().cpu().clone()
        for r, h in enumerate(histories):
            s[r, torch.as_tensor(h, dtype=torch.long)] = float("-inf")
        return s.topk(k, dim=1).indices.tolist()
    return model.recommend(users, histories, k, exclude=histories).tolist()


def check_same_as_in_process(run_dir, model, data, split, k=5, with_users=False):
    from genrec.inference import load_run

    ev = split.test.head(6)
    hists = list(ev.histories)
    raw = [[data.item_ids[i] for i in h] for h in hists]
    rec = load_run(run_dir)
    users = [str(data.user_ids[u]) for u in ev.users] if with_users else None
    got = rec.recommend(raw, k, users=users)
    want = [[str(data.item_ids[i]) for i in row] for row in reference_top(model, ev.users, hists, k)]
    assert got == want
    for row, h in zip(got, raw):
        assert len(row) == k and not set(row) & {str(x) for x in h}
    return rec, raw


def test_baseline_popularity_loads_and_errors(make_cfg, monkeypatch):
    cfg, res, model, data, split = run_and_keep_model(make_cfg, monkeypatch, "run.family=baseline",
                                                      "run.model=popularity")
    rec, raw = check_same_as_in_process(res["run_dir"], model, data, split, k=10)
    with pytest.raises(DataError, match="unknown item id 'nope'"):
        rec.recommend([raw[0] + ["nope"]], 5)
    with pytest.raises(DataError, match="unknown user id 'ghost'"):
        rec.recommend([raw[0]], 5, users=["ghost"])
    card = (Path(res["run_dir"]) / "README.md").read_text()
    metrics = json.loads((Path(res["run_dir"]) / "metrics.json").read_text())
    assert f"| recall@10 | {metrics['recall@10']:.4f} |" in card and data.fingerprint() in card
    assert "baseline/popularity" in card and "load_run(" in card


@pytest.mark.parametrize("model_name", ["mf_bpr", "sasrec"])
def test_cf_run_loads(make_cfg, monkeypatch, model_name):
    cfg, res, model, data, split = run_and_keep_model(make_cfg, monkeypatch, "run.family=cf",
                                                      f"run.model={model_name}", "cf.dim=8")
    per_user = model_name == "mf_bpr"
    rec, raw = check_same_as_in_process(res["run_dir"], model, data, split, with_users=per_user)
    folded = rec.recommend(raw[:2], 5)  # MF without users: the history is folded in
    assert all(len(r) == 5 and not set(r) & set(h) for r, h in zip(folded, raw))
    assert (Path(res["run_dir"]) / "model" / "README.md").is_file()


def test_cf_auto_classes_old_folders_and_push(tmp_path, monkeypatch):
    from huggingface_hub import HfApi
    from transformers import AutoConfig, AutoModel

    from genrec.models.cf import build_model, load_pretrained
    from genrec.models.cf.config import CFConfig

    model = build_model("sasrec", CFConfig(dim=8, layers=1), 5, 9, max_len=6)
    model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["model_type"] == "genrec_cf" and meta["model"] == "sasrec"
    assert AutoConfig.from_pretrained(str(tmp_path / "m")).model == "sasrec"
    again = AutoModel.from_pretrained(str(tmp_path / "m"))
    assert type(again) is type(model)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    meta.pop("model_type")  # a folder saved before model_type existed
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    assert load_pretrained(tmp_path / "m").n_items == 9
    pushed = {}

    def fake_upload(self, *, repo_id, folder_path, **kw):
        pushed.update(repo=repo_id, files=sorted(p.name for p in Path(folder_path).iterdir()),
                      card=(Path(folder_path) / "README.md").read_text())
        return "commit"

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: pushed.setdefault("created", repo_id))
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload)
    assert model.push_to_hub("me/sasrec") == "commit"
    assert pushed["created"] == pushed["repo"] == "me/sasrec"
    assert pushed["files"] == ["README.md", "config.json", "model.safetensors"] and "sasrec" in pushed["card"]


def fake_hub_snapshot(cache: Path, repo_id: str, run_dir: Path, allow: list[str]) -> None:
    """Lay the files push_run would upload out as the Hub cache serves them (refs/main -> snapshots/<sha>)."""
    from huggingface_hub.utils import filter_repo_objects

    files = [p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()]
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    sha = "0" * 40
    for rel in filter_repo_objects(files, allow_patterns=allow):
        (repo / "snapshots" / sha / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(run_dir / rel, repo / "snapshots" / sha / rel)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)


@pytest.mark.slow
def test_push_run_and_load_from_hub_snapshot(make_cfg, monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub import HfApi

    from genrec.inference import load_run

    cfg, res, model, data, split = run_and_keep_model(make_cfg, monkeypatch, "run.family=cf", "run.model=mf_bpr",
                                                      "cf.dim=8")
    run_dir = Path(res["run_dir"])
    pushed = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: None)
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: pushed.update(kw) or "ok")
    assert load_run(run_dir).push_to_hub("me/mf-run") == "ok"
    assert pushed["repo_id"] == "me/mf-run" and Path(pushed["folder_path"]) == run_dir
    cache = tmp_path / "hub"
    fake_hub_snapshot(cache, "me/mf-run", run_dir, pushed["allow_patterns"])
    snap = next((cache / "models--me--mf-run" / "snapshots").iterdir())
    assert (snap / "model" / "model.safetensors").is_file() and (snap / "README.md").is_file()
    assert not list(snap.rglob("best.pt")) and not (snap / "run.log").exists()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    ev = split.test.head(4)
    raw = [[data.item_ids[i] for i in h] for h in ev.histories]
    users = [str(data.user_ids[u]) for u in ev.users]
    assert load_run("me/mf-run").recommend(raw, 5, users=users) == load_run(run_dir).recommend(raw, 5, users=users)
    with pytest.raises(ConfigError, match="could not be fetched"):
        load_run("me/not-there")


@pytest.mark.slow
def test_sid_decoder_only_run_loads_and_tokenizer_pushes(make_cfg, monkeypatch):
    from huggingface_hub import HfApi

    from genrec.sid.tokenizer import SIDTokenizer

    monkeypatch.setattr("genrec.encoders.encode_items", fake_encode)
    cfg, res, model, data, split = run_and_keep_model(make_cfg, monkeypatch, *SID)
    check_same_as_in_process(res["run_dir"], model, data, split)
    folder = Path(res["run_dir"]) / "sid_rec"
    assert (folder / "model" / "README.md").is_file() and (folder / "tokenizer" / "README.md").is_file()
    pushed = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: None)
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, *, repo_id, folder_path, **kw: pushed.update(
        repo=repo_id, files=sorted(p.name for p in Path(folder_path).iterdir())))
    SIDTokenizer.from_pretrained(folder / "tokenizer").push_to_hub("me/sid-tok")
    assert pushed["repo"] == "me/sid-tok" and {"config.json", "codes.safetensors", "README.md"} <= set(pushed["files"])


@pytest.mark.slow
def test_llm_run_loads(make_cfg, monkeypatch, tmp_path):
    from genrec.config import load_config
    from genrec.data import load_data
    from genrec.models.llm.tiny import make_tiny_llm, prompt_words

    titles = list(load_data(load_config([], ["data.source=synthetic", *SMALL]).data).item_titles)
    tiny = make_tiny_llm(tmp_path / "tiny", titles + prompt_words())
    cfg, res, model, data, split = run_and_keep_model(make_cfg, monkeypatch, *LLM, f"llm.model={tiny}")
    check_same_as_in_process(res["run_dir"], model, data, split)
    assert json.loads((Path(res["run_dir"]) / "item_titles.json").read_text())[0] == titles[0]
    assert (Path(res["run_dir"]) / "adapter" / "README.md").is_file()


def test_family_without_load_is_a_clear_error(tmp_path):
    from genrec.family import Family

    class NoLoad(Family):
        name = "noload"

    with pytest.raises(ConfigError, match="cannot load a saved run"):
        NoLoad().load(tmp_path, None)
