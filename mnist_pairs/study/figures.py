"""Every figure of the report that is drawn from the study's files (summary.json, the sweeps'
history.json, calibration.json); the notebooks draw each published run's own figures (analysis.py).

    paths = write_report_figures()          # reports/figures/{findings,calibration}/…

- findings/headline.png: the seed's 98.95 % against the seed configuration's runs under both
  protocols, and the improved model on fresh seeds (each run a dot, the mean with its 95 % CI);
- findings/forest.png: what each of the seed's choices is worth (paired Δ, sorted);
- findings/improved_curves.png: the improved model's validation curves beside the seed configuration's
  on the same fresh seeds.
- <run>/reliability.png (write_published_reliability): each published run's held-out reliability
  before and after its own temperature (calibration_published.json; the report writes both).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..paths import Reports
from ..plots import new_figure, plot_reliability, save_figure
from ..seed_reference import SEED
from .ablation import BASELINE, ablation_rows
from .confirmation import PLAN, outcome

# (group, metric, label) of the headline figure, top to bottom
HEADLINE_ROWS = [
    ("seed_siamese__test", "best_test_acc", "原实验配置，按测试对选择：最佳测试准确率"),
    ("seed_siamese__test", "heldout_acc", "原实验配置，按测试对选择：留出对"),
    (BASELINE, "heldout_acc", "原实验配置，按验证对选择：留出对"),
    (PLAN["baseline"], "heldout_acc", "原实验配置，新训练种子：留出对"),
    (PLAN["improved"], "heldout_acc", "改进模型，新训练种子：留出对"),
]


def verdict_line(verdict: dict | None, target: float) -> str | None:
    """The confirmation's registered test and verdict in one line (the paired Δ on the confirmation set,
    the held-out mean against its target), for the headline figure."""
    if not verdict or not verdict.get("delta_confirm"):
        return None
    d = verdict["delta_confirm"]
    half = 100 * (d["ci95"][1] - d["ci95"][0]) / 2
    held = "达到" if verdict["target_ok"] else f"低 {100 * verdict['short_by']:.2f} 个百分点"
    return (f"预先登记的检验：确认集上改进模型 − 原实验配置 = {100 * d['mean']:+.2f} ± {half:.2f} 个百分点"
            f"（按训练种子配对，区间下限{'大于' if verdict['delta_ok'] else '不大于'} 0）；留出对均值比目标 {100 * target:.2f}% "
            f"{held}：{'已确认' if verdict['confirmed'] else '未确认'}")


def plot_headline(rows: list[tuple[str, list[float], dict]], seed_acc: float, target: float,
                  verdict: str | None = None) -> Figure:
    """Each row: its runs as dots and their mean with the 95 % CI; the seed's one number as a line;
    the confirmation's verdict (verdict_line) under the title."""
    fig, ax = new_figure(figsize=(9, 0.7 * len(rows) + 1.6))
    y = np.arange(len(rows))[::-1]
    for yi, (label, xs, st) in zip(y, rows):
        color = "C2" if label.startswith("改进") else "C0"
        ax.scatter(100 * np.asarray(xs), np.full(len(xs), yi + 0.18), s=14, color=color, alpha=0.6, zorder=2)
        m, (lo, hi) = 100 * st["mean"], (100 * st["ci95"][0], 100 * st["ci95"][1])
        ax.errorbar(m, yi, xerr=[[m - lo], [hi - m]], fmt="o", color=color, capsize=4, zorder=3)
        ax.annotate(f"{m:.2f}%", (hi, yi), xytext=(6, -4), textcoords="offset points", fontsize=9)
    ax.axvline(100 * seed_acc, color="C3", ls="--", lw=1.2, label=f"原实验公布的 {100 * seed_acc:.2f}%（单次运行，按测试对选择）")
    ax.axvline(100 * target, color="grey", ls=":", lw=1.2, label=f"改进模型的预定目标 {100 * target:.2f}%（留出对均值）")
    ax.set_yticks(y, [r[0] for r in rows])
    ax.set(xlabel="准确率 (%)：点为单个训练种子，圆点与横线为均值及 95% 置信区间",
           title=f"原实验公布的 {100 * seed_acc:.2f}% 与多个训练种子的分布" + (f"\n{verdict}" if verdict else ""))
    if verdict:
        ax.title.set_fontsize(9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize=8, frameon=False, ncol=1)
    fig.tight_layout()
    return fig


def plot_forest(labels: list[str], held: list[dict], val: list[dict]) -> Figure:
    """Paired Δ (pp) per change, sorted: held-out (filled) and validation (hollow), 95 % CIs; each
    interval blue when it leaves out 0, grey when it holds 0."""
    fig, ax = new_figure(figsize=(9, 0.5 * len(labels) + 1.6))
    y = np.arange(len(labels))[::-1]
    for yi, h, v in zip(y, held, val):
        for st, dy, filled in ((h, 0.12, True), (v, -0.12, False)):
            color = "grey" if st["ci95"][0] <= 0 <= st["ci95"][1] else "C0"
            m, lo, hi = 100 * st["mean"], 100 * st["ci95"][0], 100 * st["ci95"][1]
            ax.errorbar(m, yi + dy, xerr=[[m - lo], [hi - m]], fmt="o", mfc=color if filled else "white",
                        color=color, capsize=3)
    ax.axvline(0, color="k", lw=1)
    ax.set_yticks(y, labels)
    ax.set(xlabel="与原实验最终配置的差 Δ（百分点，同一训练种子相减；实心：留出对，空心：验证对）",
           title="原实验的哪些选择重要：区间不含 0 的（蓝色）才是这组训练种子能分辨的差别")
    fig.tight_layout()
    return fig


def mean_curves(group_dir: Path, key: str = "val_acc") -> tuple[list[int], np.ndarray]:
    """Epochs and `key` per epoch of each seed of a group (committed history.json files)."""
    hists = [json.loads(p.read_text()) for p in sorted(group_dir.glob("seed*/history.json"))]
    n = min(len(h) for h in hists)
    return list(range(1, n + 1)), np.array([[h[i][key] for i in range(n)] for h in hists])


def plot_improved_curves(curves: dict[str, tuple[list[int], np.ndarray]]) -> Figure:
    """Validation accuracy per epoch: the mean over seeds, the band from the lowest to the highest seed."""
    fig, ax = new_figure(figsize=(9, 4.5))
    for i, (label, (ep, acc)) in enumerate(curves.items()):
        color = ("C0", "C2")[i % 2]
        pct = 100 * acc
        ax.plot(ep, pct.mean(0), color=color, lw=2, label=f"{label}（{len(acc)} 个训练种子的均值）")
        ax.fill_between(ep, pct.min(0), pct.max(0), color=color, alpha=0.2)
    ax.set(xlabel="轮次 (epoch)", ylabel="验证对准确率 (%)", ylim=(95, 100),
           title="改进模型与原实验配置的验证曲线（同一组新训练种子；阴影：最低到最高的训练种子）")
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    return fig


def write_report_figures(reports: Reports = Reports()) -> list[Path]:
    """Draw the figures whose source file exists; return the paths written."""
    paths = []
    out = reports.figures("findings")
    if reports.summary.is_file():
        groups = json.loads(reports.summary.read_text())["groups"]
        rows = [(label, [r[key] for r in groups[g]["runs"]], {"mean": groups[g]["mean"][key], "ci95": groups[g]["ci95"][key]})
                for g, key, label in HEADLINE_ROWS if g in groups]
        if rows:
            verdict = verdict_line(outcome(groups), PLAN["heldout_target"])
            paths.append(save_figure(plot_headline(rows, SEED["best_test_acc"], PLAN["heldout_target"], verdict),
                                     out / "headline.png"))
        seed_rows = sorted((r for r in ablation_rows(groups) if r["delta"] and not r["lever"]),
                           key=lambda r: r["delta"]["heldout_acc"]["mean"])
        if seed_rows:
            paths.append(save_figure(plot_forest([f"{r['step']} {r['change']}" for r in seed_rows],
                                                 [r["delta"]["heldout_acc"] for r in seed_rows],
                                                 [r["delta"]["val_acc"] for r in seed_rows]), out / "forest.png"))
        named = {PLAN["baseline"]: "原实验配置", PLAN["improved"]: "改进模型"}
        curves = {label: mean_curves(reports.sweep(g)) for g, label in named.items() if reports.sweep(g).is_dir()}
        if len(curves) == 2:
            paths.append(save_figure(plot_improved_curves(curves), out / "improved_curves.png"))
    if reports.calibration.is_file():
        c = json.loads(reports.calibration.read_text())
        rel, seed = c["reliability"], c["reliability_seed"]
        t = next(r["temperature"] for r in c["runs"] if r["seed"] == seed)
        paths.append(save_figure(plot_reliability(rel["heldout"], rel["heldout_scaled"], t,
                                                  f"留出对的可靠性图（单次运行：训练种子 {seed}）"),
                                 reports.figures("calibration") / "reliability.png"))
    return paths


def write_published_reliability(reports: Reports = Reports()) -> list[Path]:
    """figures/<run>/reliability.png for each published run in calibration_published.json
    (calibration.calibrate_published): its held-out reliability before and after its own temperature."""
    from .calibration import PUBLISHED_JSON

    path = reports.root / PUBLISHED_JSON
    if not path.is_file():
        return []
    runs = json.loads(path.read_text())["runs"]
    return [save_figure(plot_reliability(c["reliability"]["heldout"], c["reliability"]["heldout_scaled"], c["temperature"],
                                         f"留出对的可靠性图（发布的运行 {name}，温度在它的验证对上拟合）"),
                        reports.figures(name) / "reliability.png") for name, c in runs.items()]
