"""CPU thread count: scoped to a run (`run.threads`), to encoding (`encoder.threads`), recorded in every row.

A seeded CPU run repeats to the last digit only at the same thread count, so the count is provenance."""
import json

import pytest
import torch

from genrec.identity import run_id
from genrec.runtime import cpu_threads


def _other_count() -> int:
    return 2 if torch.get_num_threads() == 1 else 1


def test_cpu_threads_sets_then_restores_even_on_error():
    before, want = torch.get_num_threads(), _other_count()
    with cpu_threads(want) as n:
        assert n == want == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), cpu_threads(want):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with cpu_threads(0) as n:  # 0 = as launched
        assert n == before == torch.get_num_threads()


def test_run_threads_scopes_the_run_and_lands_in_the_row(make_cfg, monkeypatch):
    from genrec.pipeline import run_point
    from genrec.scaling.leaderboard import make_row

    before, want = torch.get_num_threads(), _other_count()
    seen = []
    cfg = make_cfg("run.family=cf", "run.model=mf_bpr", "cf.dim=8", "train.epochs=2", f"run.threads={want}")
    import genrec.models.cf.family as cf_family

    real = cf_family.CFFamily.run

    def spy(self, ctx):
        seen.append(torch.get_num_threads())
        return real(self, ctx)

    monkeypatch.setattr(cf_family.CFFamily, "run", spy)
    res = run_point(cfg)
    assert seen == [want] and torch.get_num_threads() == before
    assert json.loads(make_row(cfg, res)["extra"])["cpu_threads"] == want
    # a speed knob like run.device: the same run id at any thread count (rows say which count ran)
    assert run_id(cfg) == run_id(make_cfg("run.family=cf", "run.model=mf_bpr", "cf.dim=8", "train.epochs=2"))
    again = run_point(make_cfg("run.family=cf", "run.model=mf_bpr", "cf.dim=8", "train.epochs=2",
                               f"run.threads={want}", "run.output_dir=" + str(cfg.run.output_dir) + "-again"))
    assert again["metrics"] == res["metrics"]  # same seed, same count: the same figures
