"""Every figure of the report that is drawn from the study's files (summary.json, calibration.json);
the notebooks draw each published run's own figures (analysis.py).

    paths = write_report_figures()          # reports/figures/{ablation,calibration}/…
"""
from __future__ import annotations

import json
from pathlib import Path

from ..paths import Reports
from ..plots import plot_reliability, save_figure
from .ablation import write_figures as write_ablation_figures


def write_report_figures(reports: Reports = Reports()) -> list[Path]:
    """Draw the figures whose source file exists; return the paths written."""
    paths = []
    if reports.summary.is_file():
        paths += write_ablation_figures(json.loads(reports.summary.read_text())["groups"], reports)
    if reports.calibration.is_file():
        c = json.loads(reports.calibration.read_text())
        rel, seed = c["reliability"], c["reliability_seed"]
        t = next(r["temperature"] for r in c["runs"] if r["seed"] == seed)
        paths.append(save_figure(plot_reliability(rel["heldout"], rel["heldout_scaled"], t,
                                                  f"留出对的可靠性图（单次运行：训练种子 {seed}）"),
                                 reports.figures("calibration") / "reliability.png"))
    return paths
