"""The sweep runner: expand a sweep file, plan, skip finished points, run the rest, append rows.

    genrec sweep [--sweep configs/sweeps/X.yaml] [--set k=v] [--only 'cf-*'] [--shard 0/4] [--dry-run]
                 [--force] [--out runs/X.csv]
    accelerate launch benchmarks/scale.py ...     # the same, each launched process a worker

Launched with several processes (--parallel points, the default), every process works through the whole
point list on its own: a point holds a lock in its run folder while it runs, a process that finds a point
(or a tuning group's runs) held takes up the next first and waits for it last, and a point with a row
from this launch is not run again, so the processes spread over the points as they go and each point
trains once. Two sweeps started by hand on the same points share them the same way. With --parallel
data every process runs every point, each point data-parallel across all of them (genrec.train; rank 0
writes rows and run files). --shard i/n takes every n-th point (to split across machines or jobs). A
point whose run id already has an ok row in the CSV is skipped unless --force; a killed sweep resumes
where it stopped (training resumes from runs/<run_id>/checkpoint). A failing point gets a status=failed
row. A sweep file's `tune:` grid is run on validation per point first (genrec.scaling.tune).
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SWEEP = REPO / "configs" / "sweeps" / "quickstart.yaml"
log = logging.getLogger("genrec")
_RANK, _WORLD = 0, 1
_ISOLATED = False
_DATA = False  # --parallel data: every rank runs every point, data-parallel
_JOB = ""  # this sweep's launch (job_token), set when a sweep starts


def parallel_mode(argv: list[str] | None = None) -> str:
    """'points' or 'data', from --parallel in argv (default sys.argv), else $GENREC_PARALLEL, else 'points'."""
    argv = sys.argv[1:] if argv is None else argv
    for i, a in enumerate(argv):
        if a == "--parallel" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--parallel="):
            return a.split("=", 1)[1]
    return os.environ.get("GENREC_PARALLEL", "points") or "points"


def isolate_rank(argv: list[str] | None = None) -> tuple[int, int]:
    """Under `accelerate launch`, make this process an independent worker on its own GPU.

    Call before torch initialises CUDA. Returns (rank, world size) and clears the process-group
    variables so that each worker trains its points alone; with --parallel data (parallel_mode) the
    variables are kept, so every point trains data-parallel across all processes.
    """
    global _RANK, _WORLD, _ISOLATED, _DATA
    if _ISOLATED:
        return _RANK, _WORLD
    _ISOLATED = True
    rank = int(os.environ.get("RANK", "0") or 0)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    _DATA = parallel_mode(argv) == "data" and world > 1
    if world > 1 and not _DATA:
        for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
                  "ROLE_WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
            os.environ.pop(k, None)
        vis = os.environ.get("CUDA_VISIBLE_DEVICES")
        if vis:
            ids = [x for x in vis.split(",") if x.strip()]
            os.environ["CUDA_VISIBLE_DEVICES"] = ids[local % len(ids)]
        elif os.path.exists("/dev/nvidia0"):
            os.environ["CUDA_VISIBLE_DEVICES"] = str(local)
    _RANK, _WORLD = rank, world
    return rank, world


def build_parser(ap: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    ap = ap or argparse.ArgumentParser(description="Run a genrec scaling sweep (see configs/sweeps/).")
    ap.add_argument("--sweep", default="", help=f"sweep YAML (default: {DEFAULT_SWEEP.relative_to(REPO)})")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value in every point (repeatable)")
    ap.add_argument("--only", default="", help="comma-separated point-name globs or block names, run in that order")
    ap.add_argument("--shard", default="0/1", help="run the i-th of n slices of the point list (0-based i/n)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    ap.add_argument("--force", action="store_true", help="rerun points that already have an ok row")
    ap.add_argument("--out", default="", help="CSV to append to (default: runs/<sweep name>.csv)")
    ap.add_argument("--max-minutes", type=float, default=0.0,
                    help="start no new point after this many minutes (0 = no cap); rerun to continue")
    ap.add_argument("--parallel", choices=("points", "data"), default="points",
                    help="under accelerate launch: split the points across processes (points) or train each "
                         "point data-parallel across all processes (data)")
    ap.add_argument("--metric", default="recall@10", help="metric for the closing table and plot")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


class _PointLog:
    """Send every log record to runs/<run_id>/run.log while a point runs."""

    def __init__(self, path: Path):
        self.handler = logging.FileHandler(path)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def __enter__(self):
        logging.getLogger().addHandler(self.handler)
        self.old = log.level
        if log.getEffectiveLevel() > logging.INFO:  # the run log always gets genrec's INFO lines
            log.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        log.setLevel(self.old)
        logging.getLogger().removeHandler(self.handler)
        self.handler.close()


def _plan_line(p, status: str, run_id: str | None = None) -> str:
    c = p.cfg
    fam = f"{c.run.family}/{c.run.model}"
    return f"  {status:8s} {p.name:40s} {fam:22s} {p.run_id if run_id is None else run_id}"


def check_points(points) -> None:
    """Run each point's family `check(cfg)` (genrec.family registry) before any training."""
    from genrec.errors import ConfigError
    from genrec.family import get_family

    for p in points:
        try:
            get_family(p.cfg.run.family).check(p.cfg)
        except ConfigError as e:
            raise ConfigError(f"point {p.name}: {e}") from None


def bind_data(points, cache: dict) -> None:
    """Give each point its full run id: config plus the content fingerprint of its data (each
    distinct data section is loaded once; only the last one stays in memory)."""
    from genrec.identity import config_hash, run_id, train_id

    fps: dict[str, str] = {}
    for p in points:
        key = config_hash(p.cfg.data)
        if key not in fps:
            fps[key] = _load(p.cfg, cache)[0].fingerprint()
        p.run_id, p.train_id = run_id(p.cfg, fps[key]), train_id(p.cfg, fps[key])


def _bind_from_rows(points, out: Path) -> None:
    """Dry run: give each point the run id it would have on a data fingerprint that the out CSV's ok rows
    record, when a row has it (so points already done show as done without loading the data; if the data
    has changed since, the real run will not find them and reruns them)."""
    from genrec.identity import run_id, train_id
    from genrec.scaling.leaderboard import read_rows

    rows = [r for r in read_rows(out) if r.get("status") == "ok"]
    fps, done = {r.get("data_fingerprint", "") for r in rows} - {""}, {r["run_id"] for r in rows}
    for p in points:
        for fp in fps:
            if run_id(p.cfg, fp) in done:
                p.run_id, p.train_id = run_id(p.cfg, fp), train_id(p.cfg, fp)
                break


def _load(cfg, cache: dict):
    """Load and split data once per distinct data section (the last one is kept)."""
    from genrec.identity import config_hash
    from genrec.pipeline import prepare

    key = config_hash(cfg.data)
    if key not in cache:
        cache.clear()
        cache[key] = prepare(cfg)
    return cache[key]


def run_points(points, out: Path, sweep_name: str, force: bool = False, progress: bool = True,
               cache: dict | None = None, max_minutes: float = 0.0, wait_busy: bool = True) -> dict:
    """Run the given points in order, appending a row each; returns counts by outcome. A point that another
    process is running is taken up after the others (then waited for), so that processes sharing a sweep
    spread over its points instead of queueing behind one. With wait_busy=False such a point is not waited
    for but listed under 'busy' (run_tuned then takes up other tuning groups first)."""
    from tqdm.auto import tqdm

    counts = {"ok": 0, "failed": 0, "skipped": 0}
    cache = {} if cache is None else cache
    job = _JOB or job_token()
    bar = tqdm(total=len(points), desc=f"sweep {sweep_name}", unit="point",
               disable=not progress or _RANK > 0 and _DATA, position=0)
    t0 = time.perf_counter()
    queue = [(p, _DATA) for p in points]  # (point, wait for its lock); data-parallel runs always wait
    for p, wait in queue:  # a point found busy is appended again, to be waited for after the rest
        if max_minutes and time.perf_counter() - t0 > 60 * max_minutes:
            tqdm.write(f"time cap of {max_minutes:g} min reached; rerun the same command to continue")
            break
        bar.set_postfix_str(p.name)
        outcome = _attempt(p, out, sweep_name, force, cache, job, wait)
        if outcome == "busy":
            if wait_busy:
                queue.append((p, True))
            else:
                counts.setdefault("busy", []).append(p)
            continue
        counts[outcome] += 1
        bar.update(1)
    bar.close()
    return counts


def _attempt(p, out: Path, sweep_name: str, force: bool, cache: dict, job: str, wait: bool) -> str:
    """Run one point unless it is done: 'ok' | 'failed' | 'skipped', or 'busy' when another process holds
    its lock and `wait` is off (data-parallel runs always wait: every rank must take the same points)."""
    from genrec.scaling.leaderboard import finished_run_ids

    def finished() -> bool:  # an ok row (unless --force), or any row from this launch (another of its processes)
        return p.run_id in finished_run_ids(out, job, force)

    if _same_on_all(finished()):  # another process may have done it
        return "skipped"
    run_dir = Path(p.cfg.run.output_dir) / (p.train_id or p.run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with point_lock(run_dir, p.name, wait) if _RANK == 0 or not _DATA else contextlib.nullcontext():
            if _same_on_all(finished()):  # done by the process we waited for
                return "skipped"
            return _run_one(p, run_dir, out, sweep_name, cache, job)
    except PointBusy:
        return "busy"


def run_with_tuning(points, out: Path, sweep_name: str, force: bool = False, cache: dict | None = None,
                    max_minutes: float = 0.0) -> dict:
    """run_points; points with a `tune:` spec first run their tuning grid on validation, then their
    seeds with the chosen values (genrec.scaling.tune.run_tuned; tuning rows: sweep <name>/tune)."""
    from genrec.scaling.tune import run_tuned

    cache = {} if cache is None else cache
    if not any(p.tune for p in points):
        return run_points(points, out, sweep_name, force=force, cache=cache, max_minutes=max_minutes)

    def run(pts, name, minutes, wait_busy=True):
        return run_points(pts, out, name, force=force, progress=False, cache=cache, max_minutes=minutes,
                          wait_busy=wait_busy)

    return run_tuned(points, out, sweep_name, run, lambda pts: bind_data(pts, cache), max_minutes)


def _same_on_all(flag: bool) -> bool:
    """--parallel data: rank 0's decision on every rank (one rank skipping alone would hang the others)."""
    if not _DATA:
        return flag
    import torch.distributed as dist

    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


class PointBusy(Exception):
    """Another process holds the point's lock (point_lock with wait=False)."""


class point_lock:
    """An exclusive flock on <run_dir>/.lock while a point runs; a second process waits for it, or with
    wait=False raises PointBusy (run_points then takes up the point after the others)."""

    def __init__(self, run_dir: Path, name: str, wait: bool = True):
        self.path, self.name, self.wait = run_dir / ".lock", name, wait

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            from tqdm.auto import tqdm

            if not self.wait:
                os.close(self.fd)
                tqdm.write(f"point {self.name}: another process is running it; taking up the others first")
                raise PointBusy(self.name) from None
            tqdm.write(f"point {self.name}: another process is running it; waiting for it to finish")
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _run_one(p, run_dir: Path, out: Path, sweep_name: str, cache: dict, job: str) -> str:
    """Train and evaluate one point under its run log; append its row; returns 'ok' or 'failed'."""
    from tqdm.auto import tqdm

    from genrec.pipeline import run_point
    from genrec.scaling.leaderboard import append_row, make_row

    prior = sorted(str(x.relative_to(run_dir)) for x in run_dir.rglob("train_state.json"))
    t0 = time.perf_counter()
    with _PointLog(run_dir / "run.log") if _RANK == 0 or not _DATA else contextlib.nullcontext():
        log.info("sweep %s point %s run_id %s (%s/%s)", sweep_name, p.name, p.run_id, p.cfg.run.family,
                 p.cfg.run.model)
        if prior:
            log.info("point %s resumes: found %s from an earlier attempt", p.name, ", ".join(prior))
            tqdm.write(f"point {p.name}: resuming (found {', '.join(prior)} in {run_dir})")
        try:
            data, split = _load(p.cfg, cache)
            res = run_point(p.cfg, data, split, run_dir)
            status = "ok"
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 - one failing point must not stop the sweep
            log.error("point %s failed:\n%s", p.name, traceback.format_exc())
            msg = f"{type(e).__name__}: {e}".splitlines()[0][:500]
            res = {"run_id": p.run_id, "extra": {"error": msg}, "train_time_s": time.perf_counter() - t0}
            status = "failed"
            tqdm.write(f"point {p.name} FAILED: {msg} (log: {run_dir / 'run.log'})")
    res.setdefault("extra", {})
    res["extra"] = {**res["extra"], **getattr(p, "extra", {}),  # tuning provenance (genrec.scaling.tune)
                    "wall_s": round(time.perf_counter() - t0, 2), "job": job, "run_dir": str(run_dir)}
    if prior:
        res["extra"]["resumed"] = prior
    if _DATA and _RANK != 0:  # data-parallel: rank 0 writes the row
        return status
    append_row(out, make_row(p.cfg, res, sweep=sweep_name, point=p.name, status=status))
    if status == "ok":
        m = res["metrics"]
        tqdm.write(f"point {p.name}: recall@10={m.get('recall@10', float('nan')):.4f} "
                   f"ndcg@10={m.get('ndcg@10', float('nan')):.4f} ({res['extra']['wall_s']:.1f}s)")
    return status


def job_token() -> str:
    """The launch this sweep belongs to: the same for every process of one `accelerate launch` / torchrun
    (host, the launcher's pid and start time) and different for every other sweep, even one started from
    the same shell or in the same process (host, pid, the time it started)."""
    import socket

    if _WORLD <= 1:
        return f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
    ppid = os.getppid()
    try:
        start = Path(f"/proc/{ppid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = "?"
    return f"{socket.gethostname()}:{ppid}:{start}"


def main(argv: list[str] | None = None, prog: str = "genrec sweep") -> int:
    """`genrec sweep` / `benchmarks/scale.py`: parse the arguments and run the sweep (exit status)."""
    isolate_rank(argv)
    args = build_parser().parse_args(argv)
    return run_sweep(args, prog)


def run_sweep(args, prog: str = "genrec sweep") -> int:
    from genrec.cli import setup_logging
    from genrec.errors import GenrecError

    setup_logging(args.verbose)
    if not args.verbose:  # per-epoch lines go to runs/<run_id>/run.log; the console keeps the bars
        for h in logging.getLogger().handlers:
            h.setLevel(logging.WARNING)
    os.environ.setdefault("GENREC_OFFLINE", "1")
    try:
        return _run(args)
    except GenrecError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from genrec.scaling.leaderboard import done_run_ids, read_rows
    from genrec.scaling.tune import value_label
    from genrec.scaling.sweep import load_sweep, parse_shard, select, shard

    global _JOB
    from genrec.scaling.leaderboard import git_state

    t_start = time.perf_counter()
    _JOB = job_token()
    git_state()  # the code this sweep starts with is what its rows record (read once per process)
    sweep_path = Path(args.sweep) if args.sweep else DEFAULT_SWEEP
    sw = load_sweep(sweep_path, args.overrides)
    if args.out:
        out = Path(args.out)
    else:  # runs/, never the committed benchmarks/results/ unless --out says so
        out = REPO / "runs" / f"{sw.name}.csv"
    i, n = parse_shard(args.shard)
    chosen = shard(select(sw.points, args.only), i, n)
    cache: dict = {}
    if not args.dry_run:  # a dry run plans without loading data: its ids lack the data fingerprint
        bind_data(chosen, cache)
    done = set() if args.force else done_run_ids(out)
    if args.dry_run and done:
        _bind_from_rows(chosen, out)
    # every process takes the whole list: a point's lock keeps it to one process, and a process that finds
    # a point (or a tuning group) held by another takes up the next first, so they spread as they go
    mine = chosen
    if _DATA:  # start the process group now: every rank takes rank 0's skip decisions
        from genrec.train import start_process_group
        start_process_group()
    if _RANK == 0:
        print(f"sweep {sw.name} ({sweep_path}): {len(sw.points)} points"
              + (f", {len(sw.duplicates)} duplicate(s) dropped" if sw.duplicates else "")
              + f"; this job: {len(chosen)} (shard {i}/{n}), {_WORLD} process(es)"
              + (" data-parallel" if _DATA else "") + f" -> {out}")
        from genrec.scaling.tune import plan_note, plan_tuned

        tuned, n_tuned, n_tuning = ({}, 0, 0) if args.force or not any(p.tune for p in chosen) else plan_tuned(
            chosen, read_rows(out), (lambda pts: _bind_from_rows(pts, out)) if args.dry_run
            else (lambda pts: bind_data(pts, cache)))
        for p in chosen:
            st = "done" if p.run_id in done else "run"
            if p.name in tuned:  # a tuned point: its run id is the tuned config's, once its tuning is done
                st, rid, values = tuned[p.name]
                print(_plan_line(p, st, rid or "?") + (f"  ({value_label(values)})" if values else ""))
            else:
                print(_plan_line(p, st))
        if plan_note(chosen):
            print(plan_note(chosen) + (f"; {n_tuned} of {n_tuning} have a row" if n_tuning else ""))
    check_points(chosen)
    if args.dry_run:
        return 0
    counts = run_with_tuning(mine, out, sw.name, force=args.force, cache=cache, max_minutes=args.max_minutes)
    print(f"[rank {_RANK}] ran {counts['ok']} ok, {counts['failed']} failed, skipped {counts['skipped']} "
          f"already done, in {time.perf_counter() - t_start:.1f}s", flush=True)
    if _RANK != 0:  # rank 0 has waited for every point another process held: all are finished here
        return 0
    from genrec.scaling.report import print_fits, print_leaderboard

    print()
    print_leaderboard(out, metric=args.metric, sweep=sw.name)
    print_fits(out, metric=args.metric, sweep=sw.name)
    from genrec.scaling.verdict import print_verdicts

    print_verdicts(out, metric=args.metric, sweep=sw.name)
    if not args.no_plot:
        try:
            from genrec.scaling.plots import plot_file

            for png in plot_file(out, metric=args.metric):
                print(f"plot: {png}")
        except Exception as e:  # noqa: BLE001 - a plot must not lose the finished sweep
            print(f"plot failed: {type(e).__name__}: {e}", file=sys.stderr)
    print(f"sweep {sw.name}: total wall time {time.perf_counter() - t_start:.1f}s -> {out}")
    return 0

