"""Sweep files: a YAML that expands into named, fully resolved `Config` points.

    name: recsize            # optional (default: the file stem); names the CSV and the `sweep` column
    base: [../base.yaml, ../data/ml-1m.yaml]   # relative to the sweep file, else to the working dir
    set: {train.epochs: 3}   # fixed overrides (dotted keys or nested mappings)
    grid: {cf.dim: [16, 32, 64]}               # Cartesian product over these
    points:                  # named points for axes that move together
      s: {sid_model.num_layers: 2, sid_model.d_model: 64}
      m: {sid_model.num_layers: 4, sid_model.d_model: 128}
    seeds: [0, 1]
    tune:                    # optional: choose these settings per point on validation (genrec.scaling.tune)
      grid: {train.lr: [1.0e-2, 3.0e-3], cf.reg: [0, 1.0e-4]}
      seed: 0                #   the seed of the tuning runs (default 0)
      metric: recall@10      #   the validation metric to maximise (default recall@10)
    runs:                    # optional blocks (e.g. one per family); each inherits the keys above:
      - name: pop            #   base is extended, set/grid are merged, points/seeds/tune are replaced
        set: {run.family: baseline, run.model: popularity}
        seeds: [0]

A point's layers merge in this order: base files, set, block set, point, grid values, seed, then
command-line overrides. Unknown keys are ConfigErrors naming the sweep file, the layer and the key.
"""
from __future__ import annotations

import fnmatch
import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path

from genrec.config import Config, build_config, deep_merge, parse_override, read_yaml, read_yaml_mapping
from genrec.errors import ConfigError

log = logging.getLogger("genrec")

TOP_KEYS = {"name", "description", "base", "set", "grid", "points", "seeds", "tune", "runs"}
TUNE_KEYS = {"grid", "seed", "metric"}
BLOCK_KEYS = TOP_KEYS - {"runs", "description"}


@dataclass
class SweepPoint:
    name: str  # stable, human-readable: block-point-gridvalues-s<seed>
    block: str
    cfg: Config
    run_id: str
    train_id: str = ""  # the run folder's name (run_id without evaluation settings); set with the data
    axes: dict = field(default_factory=dict)  # the values this point sets beyond the shared layers
    tune: dict | None = None  # {grid, seed, metric}: settings chosen on validation first (genrec.scaling.tune)
    extra: dict = field(default_factory=dict)  # recorded in the row's extra (tuning provenance)


@dataclass
class Sweep:
    name: str
    path: Path
    points: list[SweepPoint]
    duplicates: list[str] = field(default_factory=list)  # point names dropped: same run id as an earlier one


def nest(mapping: dict | None, where: str) -> dict:
    """{'a.b': 1, 'c': {'d.e': 2}} -> {'a': {'b': 1}, 'c': {'d': {'e': 2}}}."""
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping of key.path: value, got {mapping!r}")
    out: dict = {}
    for key, value in mapping.items():
        parts = str(key).split(".")
        if any(not p for p in parts):
            raise ConfigError(f"{where}: bad key path {key!r}")
        if isinstance(value, dict):
            value = nest(value, f"{where}.{key}")
        layer: dict = value
        for p in reversed(parts):
            layer = {p: layer}
        out = deep_merge(out, layer)
    return out


def _value_tag(v) -> str:
    if isinstance(v, bool):
        return "T" if v else "F"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "x".join(_value_tag(x) for x in v)
    if v is None:
        return "none"
    return str(v).replace("/", "_").replace(" ", "_")


def _grid_tags(keys: list[str]) -> dict[str, str]:
    """Short label per grid key: its last path part, or the full path where last parts collide."""
    last = [k.split(".")[-1] for k in keys]
    return {k: (l if last.count(l) == 1 else k) for k, l in zip(keys, last)}


def _resolve_file(rel: str, sweep_path: Path) -> Path:
    for cand in (sweep_path.parent / rel, Path(rel)):
        if cand.is_file():
            return cand
    raise ConfigError(f"{sweep_path}: base file {rel!r} not found (relative to the sweep file or the working dir)")


def _as_list(v, where: str) -> list:
    if v is None:
        return []
    if isinstance(v, (str, int)):
        return [v]
    if not isinstance(v, list):
        raise ConfigError(f"{where}: expected a list, got {v!r}")
    return v


def _blocks(doc: dict, path: Path) -> list[dict]:
    unknown = sorted(set(doc) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown sweep key {unknown[0]!r} (known: {', '.join(sorted(TOP_KEYS))})")
    top = {k: doc.get(k) for k in BLOCK_KEYS}
    runs = doc.get("runs")
    if runs is None:
        return [{**top, "name": "", "base": _as_list(top.get("base"), f"{path}: base"),
                 "set": nest(top.get("set"), f"{path}: set")}]
    if not isinstance(runs, list) or not runs:
        raise ConfigError(f"{path}: runs: expected a non-empty list of blocks")
    out = []
    for i, b in enumerate(runs):
        where = f"{path}: runs[{i}]"
        if not isinstance(b, dict):
            raise ConfigError(f"{where}: expected a mapping")
        unknown = sorted(set(b) - BLOCK_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(BLOCK_KEYS))})")
        grid = dict(top.get("grid") or {})
        grid.update(b.get("grid") or {})
        out.append({
            "name": str(b.get("name") or f"block{i}"),
            "base": _as_list(top.get("base"), f"{path}: base") + _as_list(b.get("base"), f"{where}.base"),
            "set": deep_merge(nest(top.get("set"), f"{path}: set"), nest(b.get("set"), f"{where}.set")),
            "grid": grid,
            "points": b["points"] if "points" in b else top.get("points"),
            "seeds": b["seeds"] if "seeds" in b else top.get("seeds"),
            "tune": b["tune"] if "tune" in b else top.get("tune"),
        })
    names = [b["name"] for b in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{path}: runs: duplicate block name {sorted(dup)[0]!r}")
    return out


def load_sweep(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Sweep:
    """Expand a sweep file into resolved points (in file order; duplicate run ids dropped)."""
    from genrec.identity import run_id

    path = Path(path)
    doc = read_yaml_mapping(path, "sweep")
    name = str(doc.get("name") or path.stem)
    cli = [(o, parse_override(o)) for o in overrides]
    points: list[SweepPoint] = []
    seen: dict[str, str] = {}
    dups: list[str] = []
    for block in _blocks(doc, path):
        for p in _expand_block(block, path, cli):
            rid = run_id(p.cfg)
            if rid in seen:
                dups.append(p.name)
                log.warning("%s: point %s has the same run id as %s; dropped", path, p.name, seen[rid])
                continue
            seen[rid] = p.name
            p.run_id = rid
            points.append(p)
    names = [p.name for p in points]
    clash = {n for n in names if names.count(n) > 1}
    if clash:
        raise ConfigError(f"{path}: two different points are both named {sorted(clash)[0]!r}; name the blocks/points")
    return Sweep(name, path, points, dups)


def _expand_block(block: dict, path: Path, cli: list[tuple[str, dict]]) -> list[SweepPoint]:
    bname = block["name"]
    tag = f"{path}" + (f" [runs: {bname}]" if bname else "")
    raw: dict = {}
    for rel in block["base"]:
        f = _resolve_file(str(rel), path)
        raw = deep_merge(raw, read_yaml(f))
        build_config(raw, f"{tag} base {f}")
    raw = deep_merge(raw, block["set"])
    build_config(raw, f"{tag} set")

    pts = block["points"]
    if pts is None:
        pts = {}
    if not isinstance(pts, dict):
        raise ConfigError(f"{tag}: points: expected a mapping name -> {{key: value}}")
    point_layers = []
    for pname, body in pts.items():
        layer = nest(body, f"{tag} points.{pname}")
        build_config(deep_merge(raw, layer), f"{tag} points.{pname}")
        point_layers.append((str(pname), layer, body or {}))
    if not point_layers:
        point_layers = [("", {}, {})]

    grid = block["grid"] or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{tag}: grid: expected a mapping key.path -> list of values")
    keys = list(grid)
    values = []
    for k in keys:
        vals = grid[k]
        if not isinstance(vals, list) or not vals:
            raise ConfigError(f"{tag}: grid.{k}: expected a non-empty list of values")
        for v in vals:
            build_config(deep_merge(raw, nest({k: v}, f"{tag} grid")), f"{tag} grid.{k}={v!r}")
        values.append(vals)
    tags = _grid_tags(keys)

    seeds = block["seeds"]
    seeds = _as_list(seeds, f"{tag}: seeds") if seeds is not None else [None]
    for s in seeds:
        if s is not None and (isinstance(s, bool) or not isinstance(s, int)):
            raise ConfigError(f"{tag}: seeds: expected integers, got {s!r}")

    tune = _tune_spec(block.get("tune"), tag, raw, keys)
    out = []
    for pname, layer, body in point_layers:
        for combo in itertools.product(*values) if keys else [()]:
            for s in seeds:
                r = deep_merge(raw, layer)
                axes = dict(body)
                for k, v in zip(keys, combo):
                    r = deep_merge(r, nest({k: v}, f"{tag} grid"))
                    axes[k] = v
                if s is not None:
                    r = deep_merge(r, {"run": {"seed": s}})
                for o, layer_o in cli:
                    r = deep_merge(r, layer_o)
                    build_config(r, f"--set {o}")
                cfg = build_config(r, tag)
                parts = [x for x in (bname, pname) if x]
                parts += [f"{tags[k]}{_value_tag(v)}" for k, v in zip(keys, combo)]
                parts.append(f"s{cfg.run.seed}")
                out.append(SweepPoint("-".join(parts), bname, cfg, "", axes=axes, tune=tune))
    return out


def _tune_spec(spec, tag: str, raw: dict, grid_keys: list[str]) -> dict | None:
    """Check a `tune:` mapping and fill its defaults: {grid: {key: [values]}, seed: 0, metric: recall@10}."""
    from genrec.scaling.leaderboard import METRIC_COLS

    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ConfigError(f"{tag}: tune: expected a mapping with grid, seed, metric")
    unknown = sorted(set(spec) - TUNE_KEYS)
    if unknown:
        raise ConfigError(f"{tag}: tune: unknown key {unknown[0]!r} (known: {', '.join(sorted(TUNE_KEYS))})")
    grid = spec.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise ConfigError(f"{tag}: tune.grid: expected a non-empty mapping key.path -> list of values")
    for k, vals in grid.items():
        if k in grid_keys or k in ("run.seed", "eval.split"):
            raise ConfigError(f"{tag}: tune.grid.{k}: this key cannot be tuned (a grid axis, the seed or the split)")
        if not isinstance(vals, list) or not vals:
            raise ConfigError(f"{tag}: tune.grid.{k}: expected a non-empty list of values")
        for v in vals:
            build_config(deep_merge(raw, nest({k: v}, f"{tag} tune.grid")), f"{tag} tune.grid.{k}={v!r}")
    seed = spec.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{tag}: tune.seed: expected an integer, got {seed!r}")
    metric = str(spec.get("metric", "recall@10"))
    if metric not in METRIC_COLS:
        raise ConfigError(f"{tag}: tune.metric {metric!r}: expected one of {', '.join(METRIC_COLS)}")
    return {"grid": {str(k): list(v) for k, v in grid.items()}, "seed": seed, "metric": metric}


def select(points: list[SweepPoint], only: str = "") -> list[SweepPoint]:
    """Keep points whose name or block matches one of the comma-separated glob patterns, in the order of
    the patterns (the points of the first pattern first; in sweep order within one)."""
    pats = [p.strip() for p in only.split(",") if p.strip()]
    if not pats:
        return list(points)
    keep, taken = [], set()
    for q in pats:
        for i, p in enumerate(points):
            if i not in taken and (fnmatch.fnmatchcase(p.name, q) or p.block == q or p.name == q):
                keep.append(p)
                taken.add(i)
    if not keep:
        raise ConfigError(f"--only {only!r} matches no point (points: {', '.join(p.name for p in points[:8])}"
                          + (", ..." if len(points) > 8 else "") + ")")
    return keep


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' (0-based i) -> (i, n)."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def shard(points: list, i: int, n: int) -> list:
    return points[i::n]
