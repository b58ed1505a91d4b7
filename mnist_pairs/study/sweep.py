"""Multi-seed sweeps on Optuna: one trial per training seed, each an ordinary run folder.

    python -m mnist_pairs sweep --params params/seed_siamese.yaml --protocol validation --seeds 0-4
    python -m mnist_pairs sweep ... --workers 2                   # two local worker processes
    python -m mnist_pairs sweep ... --storage postgresql://…/db  # workers on many nodes

The study `<params stem>__<protocol>` holds one enqueued trial per seed. Workers pop waiting
trials (an atomic step in Optuna's storages), train the seed's run folder under
experiments/sweeps/<study>/, and report the selection accuracy. A re-run skips finished seeds
and re-enqueues seeds whose worker died: the killed run folder resumes from its last.pt.
Default storage: Optuna's journal file experiments/sweeps/optuna.log (no server). With an
RDB URL, workers send heartbeats and a stale trial is failed and retried by Optuna.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..config import Config, load_config
from ..paramfile import parse_int_list
from ..paths import SWEEPS_DIR, resolve
from ..runs import Run



@dataclass(frozen=True)
class SweepSpec:
    params: str
    protocol: str
    overrides: tuple = ()          # ((key, value), …) applied after the params file
    storage: str | None = None
    out_root: str = SWEEPS_DIR

    @property
    def name(self) -> str:
        return f"{Path(self.params).stem}__{self.protocol}"

    @property
    def out_dir(self) -> Path:
        return resolve(self.out_root) / self.name

    def config(self, seed: int) -> Config:
        return load_config(self.params, **dict(self.overrides), protocol=self.protocol, seed=seed,
                           out_dir=str(self.out_dir), run_name=f"seed{seed}")


def parse_seeds(text: str) -> list[int]:
    """"0-4" -> [0, 1, 2, 3, 4]; "1,5,9" -> [1, 5, 9]."""
    return parse_int_list(text, "--seeds")


def _storage(spec: SweepSpec):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if spec.storage:
        # a trial whose worker stopped beating for grace_period is retried (up to 3 times): Optuna 4.9's
        # name for what RetryFailedTrialCallback / failed_trial_callback did (both deprecated there)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
        return optuna.storages.RDBStorage(spec.storage, heartbeat_interval=60, grace_period=180,
                                          heartbeat_stale_trial_callback=retry)
    path = resolve(spec.out_root) / "optuna.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def _study(spec: SweepSpec):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=spec.name, storage=_storage(spec), direction="maximize",
                               load_if_exists=True)


def _alive(worker: str) -> bool:
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname():
        return True  # another node's worker: RDB heartbeats judge it, not us
    try:
        os.kill(int(pid), 0)
        return True
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True


def enqueue(spec: SweepSpec, seeds: list[int]) -> list[int]:
    """Enqueue each seed that is neither finished, waiting nor running; fail trials whose
    local worker is dead first. Returns the seeds enqueued."""
    from optuna.trial import TrialState

    for seed in seeds:
        spec.config(seed)  # a bad params file or override fails here, before any trial exists
    study = _study(spec)
    state: dict[int, set] = {}
    for t in study.get_trials(deepcopy=False):
        seed = t.params.get("seed", t.system_attrs.get("fixed_params", {}).get("seed"))
        if seed is None:
            continue
        worker = t.user_attrs.get("worker")
        started = t.datetime_start.timestamp() if t.datetime_start else time.time()
        # a popped trial names its worker at once; none after a minute means it died popping
        if t.state == TrialState.RUNNING and (not _alive(worker) if worker else time.time() - started > 60):
            study.tell(t.number, state=TrialState.FAIL)
            continue
        state.setdefault(seed, set()).add(t.state)
    queued = [s for s in seeds if not state.get(s, set()) & {TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING}]
    for s in queued:
        study.enqueue_trial({"seed": s})
    return queued


def run_seed(spec: SweepSpec, seed: int, log=print) -> Run:
    """The seed's run folder: read when finished, resumed when killed, else trained."""
    from ..train import fit

    cfg = spec.config(seed)
    run_dir = cfg.out_path / cfg.run_name
    if (run_dir / "results.json").is_file():
        return Run(run_dir)
    if (run_dir / "last.pt").is_file():
        # with the thread count its last.pt was written with (a worker of a 2-worker sweep has 1 thread
        # and a lone worker 2): the resumed run then equals an uninterrupted one
        import torch

        threads = (Run(run_dir).checkpoint("last").get("numeric_path") or {}).get("threads")
        before = torch.get_num_threads()
        try:
            return fit(resume=run_dir, overrides={"epochs": cfg.epochs} | ({"num_threads": threads} if threads else {}),
                       log=log)
        finally:
            torch.set_num_threads(before)
    if run_dir.exists():  # died before its first epoch ended: nothing to keep
        import shutil

        shutil.rmtree(run_dir)
    return fit(cfg, log=log)


def work(spec: SweepSpec, log=print) -> list[int]:
    """Pop waiting trials until none is left; returns the seeds this worker ran."""
    from optuna.trial import TrialState

    study = _study(spec)
    done = []
    while study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial = study.ask()
        frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
        if "fixed_params" not in frozen.system_attrs:  # another worker took the last one
            trial.set_user_attr("note", "queue was empty")
            study.tell(trial, state=TrialState.PRUNED)
            break
        seed = trial.suggest_int("seed", 0, 2 ** 32 - 1)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        run = run_seed(spec, seed, log)
        trial.set_user_attr("run_dir", str(run.dir))
        res = run.results
        study.tell(trial, res[f"best_{res['selection']}"]["acc"])
        done.append(seed)
    return done


def _worker_main(spec: SweepSpec, index: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # workers share the cores instead of oversubscribing them
    prefix = f"[worker {index}] "
    work(spec, log=lambda m: print(prefix + m, flush=True))


def sweep(spec: SweepSpec, seeds: list[int], workers: int = 1, log=print) -> list[Run]:
    """Enqueue the seeds, run `workers` local workers (0: enqueue only) and return the
    finished runs of these seeds."""
    queued = enqueue(spec, seeds)
    log(f"sweep {spec.name}: seeds {seeds}; enqueued {queued}; storage "
        f"{spec.storage or resolve(spec.out_root) / 'optuna.log'}")
    t0 = time.perf_counter()
    if workers == 1:
        work(spec, log)
    elif workers > 1:
        ctx = mp.get_context("spawn")
        threads = max(1, (os.cpu_count() or 1) // workers)
        procs = [ctx.Process(target=_worker_main, args=(spec, i, threads)) for i in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    log(f"sweep {spec.name}: {time.perf_counter() - t0:.0f} s")
    runs = [Run(spec.config(s).out_path / f"seed{s}") for s in seeds]
    return [r for r in runs if r.finished]

