"""One inference API for a trained run of any family, with the dataset's own item ids in and out.

    from genrec.inference import load_run
    rec = load_run("runs/cf-mf_bpr-...")            # a run folder, or a Hub repo id ("owner/name")
    rec.recommend([["i3", "i7", "i1"]], k=10)        # -> [["i12", "i5", ...]]: k ids, none from the history

`load_run` reads the folder's config.yaml and item_ids.json and asks the run's family (genrec.family
registry, `Family.load(run_dir, cfg)`) for its trained model; no training data is read. Ranking follows
the evaluator's rule (genrec.eval.evaluate): a score model gets every history item masked, a generative
model is called with `exclude=` the histories, so a list never holds a history item.

Users: sequential models (SASRec, SID, LLM, baselines) need only the histories. Models with a per-user
table (MF, LightGCN, ...) use `users=` (the dataset's own user ids, from the run's user_ids.json) when
given; without it a dot-product model folds the history in (the user vector is the mean of the history's
item vectors), and a model that cannot (NeuMF; SID with user tokens) asks for `users=`.

Publishing: `write_model_card(run_dir)` (called at the end of genrec.pipeline.run_point) writes README.md
model cards (metrics.json, params, data fingerprint, config summary) into the run folder and each model
folder in it; `push_run(run_dir, repo_id)` / `Recommender.push_to_hub(repo_id)` uploads the run's
inference files, and `load_run(repo_id)` loads them back.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml

from genrec.errors import ConfigError, DataError
from genrec.hub import local_folder, push_folder

ARTIFACTS = ("model", "sid_rec/model", "sid_rec/tokenizer", "adapter")  # model folders a family saves
PUSH_FILES = ["README.md", "config.yaml", "item_ids.json", "user_ids.json", "metrics.json", "run_info.json",
              "spectrum.json", "popularity_counts.json", "item_titles.json", "item_sid_codes.json"]


def model_root(run_dir: Path, cfg) -> Path:
    """Where the tested model lives: <run_dir>/refit after a train.refit run, else the run folder."""
    refit = Path(run_dir) / "refit"
    return refit if cfg.train.refit and refit.is_dir() else Path(run_dir)


def _read_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.is_file() else default


class Recommender:
    """A trained run behind `recommend(histories, k, users=None)` in the dataset's own ids."""

    def __init__(self, model, item_ids: list[str], cfg=None, run_dir: str | Path | None = None,
                 user_ids: list[str] | None = None):
        self.model, self.cfg = model, cfg
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.item_ids = [str(x) for x in item_ids]
        self.item_index = {x: i for i, x in enumerate(self.item_ids)}
        self.user_index = None if user_ids is None else {str(u): i for i, u in enumerate(user_ids)}
        self.batch_size = int(cfg.eval.batch_size) if cfg is not None else 256

    def __repr__(self) -> str:
        name = f"{self.cfg.run.family}/{self.cfg.run.model}" if self.cfg is not None else type(self.model).__name__
        return f"Recommender({name}, {len(self.item_ids)} items, {self.run_dir})"

    def to_indices(self, histories) -> list[np.ndarray]:
        """Raw item ids -> internal item indices; an unknown id is a DataError naming it."""
        out = []
        for h in histories:
            if isinstance(h, (str, bytes)):
                raise DataError("histories: a list of histories (each a list of item ids), not one string")
            row = []
            for x in h:
                i = self.item_index.get(str(x))
                if i is None:
                    raise DataError(f"unknown item id {x!r}: not in this run's catalogue "
                                    f"({len(self.item_ids)} items, item_ids.json)")
                row.append(i)
            out.append(np.asarray(row, dtype=np.int64))
        return out

    def to_users(self, users, n: int) -> torch.Tensor | None:
        if users is None:
            return None
        if len(users) != n:
            raise DataError(f"users: {len(users)} ids for {n} histories")
        if self.user_index is None:
            raise DataError("users=: this run has no user_ids.json (recommend from histories only)")
        bad = [u for u in users if str(u) not in self.user_index]
        if bad:
            raise DataError(f"unknown user id {bad[0]!r}: not among this run's {len(self.user_index)} users")
        return torch.tensor([self.user_index[str(u)] for u in users], dtype=torch.long)

    @torch.no_grad()
    def recommend(self, histories, k: int = 10, users=None) -> list[list[str]]:
        """Top-k item ids (best first) for each history, never one of its own items."""
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        hist = self.to_indices(histories)
        uidx = self.to_users(users, len(hist))
        out: list[list[str]] = []
        for s in range(0, len(hist), self.batch_size):
            u = None if uidx is None else uidx[s:s + self.batch_size]
            top = self.top_indices(u, hist[s:s + self.batch_size], k)
            out += [[self.item_ids[i] for i in row if 0 <= i < len(self.item_ids)] for row in top]
        return out

    def top_indices(self, users: torch.Tensor | None, hist: list[np.ndarray], k: int) -> list[list[int]]:
        """Internal indices of the top k per history, with the evaluator's ranking rule."""
        model = self.model
        if users is None and user_dependent(model):
            model = FoldIn.of(model)
        ids = users if users is not None else torch.zeros(len(hist), dtype=torch.long)
        if not hasattr(model, "score"):
            top = model.recommend(ids, hist, k, exclude=hist)
            return np.asarray(top.cpu() if isinstance(top, torch.Tensor) else top).tolist()
        scores = torch.nan_to_num(model.score(ids, hist).float().cpu(), nan=float("-inf"))
        for r, h in enumerate(hist):
            scores[r, torch.as_tensor(h, dtype=torch.long)] = float("-inf")
        top = scores.topk(min(k, scores.shape[1]), dim=1).indices.tolist()
        return [[i for i in row if i not in set(h.tolist())] for row, h in zip(top, hist)]

    def push_to_hub(self, repo_id: str, **kwargs):
        if self.run_dir is None:
            raise ConfigError("push_to_hub: this Recommender was not loaded from a run folder")
        return push_run(self.run_dir, repo_id, **kwargs)


def user_dependent(model) -> bool:
    """Does the model read a per-user table or token (so a history alone does not define the user)?"""
    inner = getattr(model, "model", model)  # FaissRanker wraps the CF model
    if hasattr(inner, "sequential"):
        return not inner.sequential
    return bool(getattr(getattr(inner, "config", None), "user_tokens", 0))


class FoldIn:
    """A dot-product CF model scored for users it has not seen: the user vector is the mean of the
    history's item vectors (raw, before the model's normalisation / temperature)."""

    def __init__(self, model):
        self.model = model

    @classmethod
    def of(cls, model) -> "FoldIn":
        inner = getattr(model, "model", model)
        if not getattr(inner, "dot_product", False):
            raise ConfigError(f"{type(inner).__name__} scores per known user and cannot fold a history in: "
                              f"pass users= (the dataset's user ids)")
        return cls(inner)

    @torch.no_grad()
    def score(self, users, histories) -> torch.Tensor:
        items = self.model.item_embeddings()
        rows = [items[torch.as_tensor(h, dtype=torch.long, device=items.device)].mean(0) if len(h)
                else items.new_zeros(items.shape[1]) for h in histories]
        uv = self.model.transform(torch.stack(rows))
        return (uv @ self.model.transform(items).T).float() * self.model.inv_temp(None)


def load_run(path: str | Path, device: str | None = None) -> Recommender:
    """A Recommender for a run folder of any family (or a Hub repo id holding one, see push_run)."""
    from genrec.config import load_config
    from genrec.family import get_family

    folder = local_folder(path)
    if not (folder / "config.yaml").is_file() or not (folder / "item_ids.json").is_file():
        raise ConfigError(f"{path}: not a genrec run folder (needs config.yaml and item_ids.json)")
    cfg = load_config([str(folder / "config.yaml")], [f"run.device={device}"] if device else [])
    model = get_family(cfg.run.family).load(model_root(folder, cfg), cfg)
    return Recommender(model, _read_json(folder / "item_ids.json"), cfg, folder,
                       _read_json(folder / "user_ids.json"))


# ---------------------------------------------------------------------------------------- model cards

def _data_info(data) -> dict:
    return {"name": data.name, "source": data.source, "n_users": data.n_users, "n_items": data.n_items,
            "n_interactions": data.n_interactions, "fingerprint": data.fingerprint()}


def model_card(run_dir: str | Path, repo_id: str | None = None) -> str:
    """README.md text: YAML header, the run's metrics.json, params, data and a config summary."""
    from genrec import __version__
    from genrec.family import get_family

    run_dir = Path(run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    metrics = _read_json(run_dir / "metrics.json", {})
    info = _read_json(run_dir / "run_info.json", {})
    fam, model = cfg["run"]["family"], cfg["run"]["model"]
    data = info.get("data", {})
    lines = ["---", "library_name: genrec", f"tags: [recommendation, genrec, {fam}, {model}]", "---", "",
             f"# genrec {fam}/{model} on {data.get('name', cfg['data'].get('source'))}", "",
             f"Trained with genrec {__version__}; run folder `{run_dir.name}`.", "", "## Results", ""]
    if metrics:
        lines += [f"{cfg['eval']['split']} split, {metrics.get('users_evaluated')} users, full ranking, "
                  f"exclude_history={metrics.get('exclude_history')}.", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in metrics.items() if "@" in k and isinstance(v, float)]
        lines += [f"| {k} | {metrics[k]} |" for k in ("invalid_rate", "target_in_history") if k in metrics]
    else:
        lines.append("No metrics.json yet.")
    lines += ["", "## Model", ""] + [f"- {k}: {v}" for k, v in info.get("params", {}).items()]
    lines += ["", "## Data", ""] + [f"- {k}: {v}" for k, v in data.items()]
    sections = ["run", "data", *get_family(fam).sections, "train", "eval", "decode"]
    summary = {k: cfg[k] for k in sections if k in cfg}
    lines += ["", "## Config", "", "```yaml", yaml.safe_dump(summary, sort_keys=False).rstrip(), "```", "",
              "## Usage", "", "```python", "from genrec.inference import load_run", "",
              f"rec = load_run({repo_id or run_dir.name!r})  # a run folder or a Hub repo id",
              "rec.recommend([[\"<item id>\", \"<item id>\"]], k=10)  # the dataset's own item ids", "```", ""]
    return "\n".join(lines)


def write_model_card(run_dir: str | Path, params: dict | None = None, data=None,
                     repo_id: str | None = None) -> Path:
    """README.md in the run folder and each model folder in it. `params` / `data` (given at the end of a
    run) are kept in run_info.json, and `data` also writes user_ids.json (users= of Recommender.recommend)."""
    run_dir = Path(run_dir)
    info = _read_json(run_dir / "run_info.json", {})
    if params is not None:
        info["params"] = {k: v for k, v in params.items() if isinstance(v, (int, float, str)) or v is None}
    if data is not None:
        info["data"] = _data_info(data)
        if not (run_dir / "user_ids.json").exists():  # user index u <-> the dataset's own user id
            (run_dir / "user_ids.json").write_text(json.dumps([str(u) for u in data.user_ids]))
    if params is not None or data is not None:
        (run_dir / "run_info.json").write_text(json.dumps(info, indent=1))
    card = model_card(run_dir, repo_id)
    (run_dir / "README.md").write_text(card)
    for sub in ARTIFACTS:
        for base in (run_dir, run_dir / "refit"):
            if (base / sub).is_dir():
                (base / sub / "README.md").write_text(card)
    return run_dir / "README.md"


def push_run(run_dir: str | Path, repo_id: str, commit_message: str | None = None, private: bool | None = None,
             token: str | None = None):
    """Upload what load_run needs (config, id maps, metrics, model card, the model folders; no checkpoints,
    logs or training state) to the Hub model repo `repo_id`; `load_run(repo_id)` loads it back."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir}: not a genrec run folder (no config.yaml)")
    write_model_card(run_dir, repo_id=repo_id)
    folders = [f"{pre}{sub}/*" for pre in ("", "refit/") for sub in ARTIFACTS]
    refit = [f"refit/{f}" for f in PUSH_FILES if f.endswith(("counts.json", "titles.json", "codes.json"))]
    return push_folder(run_dir, repo_id, commit_message or f"Upload genrec run {run_dir.name}", private=private,
                       token=token, allow_patterns=PUSH_FILES + refit + folders)
