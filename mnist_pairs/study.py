"""The full study, as the README's main command runs it (`make study`).

The data notebook once; then for each params file (seed_siamese, seed_concat) papermill runs
02_train (the file's full configuration, training seed 42) and 03_analysis (publishing the run
to reports/runs/<name>/ and its figures to reports/figures/<name>/). The executed notebooks are
saved in reports/notebooks/. At the end the report is written once, from the published runs,
the committed multi-seed summary (`make sweep`) and the benchmarks.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from pathlib import Path

from .config import load_config
from .paths import PROJECT_ROOT, REPORTS_DIR, atomic_write_text

NOTEBOOKS = PROJECT_ROOT / "notebooks"
PUBLISHED = {"siamese": "seed_siamese", "concat": "seed_concat"}  # model -> reports/runs/<name>


def execute(name: str, out: Path, parameters: dict) -> None:
    import papermill as pm

    print(f"\n=== papermill {name} -> {out.relative_to(PROJECT_ROOT)}  {parameters}", flush=True)
    pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), parameters=parameters,
                        cwd=str(NOTEBOOKS), kernel_name="python3", log_output=True, progress_bar=False)


def run_study(params_files: list[str], report_only: bool = False) -> Path:
    from .report import write_report

    if report_only:
        return write_report()
    # papermill's log_output goes through the "papermill" logger: show the notebooks' own
    # output (one line per epoch) on the terminal while they run.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    out = REPORTS_DIR / "notebooks"
    out.mkdir(parents=True, exist_ok=True)
    cfgs = {pf: load_config(pf) for pf in params_files}  # a bad params file fails here, before any work
    execute("01_data", out / "01_data.ipynb", {"params_file": params_files[0]})
    for pf, cfg in cfgs.items():
        name = Path(pf).stem
        run_name = f"{name}_{datetime.now():%Y%m%d_%H%M%S}"
        execute("02_train", out / f"02_train_{name}.ipynb", {"params_file": pf, "run_name": run_name})
        execute("03_analysis", out / f"03_analysis_{name}.ipynb",
                {"run_dir": str(cfg.out_path / run_name), "publish_as": name})
    wall = time.perf_counter() - t0
    atomic_write_text(REPORTS_DIR / "study.json", json.dumps(
        {"command": "make study", "params": params_files, "wall_s": round(wall, 1),
         "finished": datetime.now().isoformat(timespec="seconds")}, indent=1))
    report = write_report()
    print(f"\nstudy done in {wall:.0f} s; report: {report}")
    return report
