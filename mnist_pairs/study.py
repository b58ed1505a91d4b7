"""The full study, as the README's main command runs it (`make study`).

For the data notebook once, then for each params file (seed_siamese, seed_concat):
papermill runs 02_train (the file's full configuration) and 03_analysis (publishing the run
to reports/runs/<name>/ and reports/figures/<name>/); the executed notebooks are saved in
reports/notebooks/ and the last 03 rewrites reports/report_zh.md from all published runs.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from pathlib import Path

from .config import load_config
from .paths import PROJECT_ROOT, REPORTS_DIR, atomic_write_text, resolve

NOTEBOOKS = PROJECT_ROOT / "notebooks"


def _execute(name: str, out: Path, parameters: dict) -> None:
    import papermill as pm

    print(f"\n=== papermill {name} -> {out.relative_to(PROJECT_ROOT)}  {parameters}", flush=True)
    pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), parameters=parameters,
                        cwd=str(NOTEBOOKS), kernel_name="python3", log_output=True, progress_bar=False)


def run_study(params_files: list[str], report_only: bool = False) -> Path:
    # papermill's log_output goes through the "papermill" logger: show the notebooks' own
    # output (one line per epoch) on the terminal while they run.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    out = REPORTS_DIR / "notebooks"
    out.mkdir(parents=True, exist_ok=True)
    if report_only:
        return _write_report()
    for pf in params_files:
        load_config(pf)  # a bad params file fails here, before an hour of work
    _execute("01_data", out / "01_data.ipynb", {"params_file": params_files[0]})
    for pf in params_files:
        name = Path(pf).stem
        run_name = f"{name}_{datetime.now():%Y%m%d_%H%M%S}"
        # epochs/seed/model None: every setting comes from the params file
        _execute("02_train", out / f"02_train_{name}.ipynb",
                 {"params_file": pf, "epochs": None, "seed": None, "model": None, "run_name": run_name})
        cfg = load_config(pf)
        _execute("03_analysis", out / f"03_analysis_{name}.ipynb",
                 {"run_dir": str(resolve(cfg.out_dir) / run_name), "publish_as": name})
    wall = time.perf_counter() - t0
    atomic_write_text(REPORTS_DIR / "study.json", json.dumps(
        {"command": "make study", "params": params_files, "wall_s": round(wall, 1)}, indent=1))
    report = _write_report()  # again, now with the study's wall time
    print(f"\nstudy done in {wall:.0f} s; report: {report}")
    return report


def _write_report() -> Path:
    from .report import write_report

    runs = {"siamese": REPORTS_DIR / "runs" / "seed_siamese", "concat": REPORTS_DIR / "runs" / "seed_concat"}
    timing = REPORTS_DIR / "study.json"  # written by the study that produced the published runs
    wall = json.loads(timing.read_text())["wall_s"] if timing.is_file() else None
    return write_report(runs, REPORTS_DIR / "report_zh.md", REPORTS_DIR / "figures",
                        benchmark=REPORTS_DIR / "benchmarks" / "bench_epoch.json", study_wall_s=wall)
