"""Figures with Chinese labels. Each function takes data and returns a matplotlib Figure;
none writes files or calls plt.show() (use `save_figure`).

The CJK font (Noto Sans SC, from the PyPI package pylopdf-fonts-zh-cn) is registered once,
in `setup_style`, after seaborn's `set_theme` (which would reset it otherwise).
"""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt  # noqa: F401  (loads Jupyter's inline backend, which shows Figures)
import numpy as np
import seaborn as sns
from matplotlib import font_manager
from matplotlib.figure import Figure

from .paths import atomic_write_bytes

_STYLE_DONE = False
CJK_FONT_FILE = "NotoSansSC-Regular.otf"


def cjk_font_path() -> Path:
    import pylopdf_fonts_zh_cn

    return Path(pylopdf_fonts_zh_cn.__file__).parent / CJK_FONT_FILE


def setup_style() -> str:
    """Seaborn theme + the CJK font, once per process. Returns the font family name."""
    global _STYLE_DONE
    path = cjk_font_path()
    name = font_manager.FontProperties(fname=str(path)).get_name()
    if not _STYLE_DONE:
        font_manager.fontManager.addfont(str(path))
        sns.set_theme(style="whitegrid", context="notebook")
        plt.rcParams.update({"font.family": "sans-serif", "font.sans-serif": [name, "DejaVu Sans"],
                             "axes.unicode_minus": False, "figure.dpi": 100, "savefig.dpi": 110})
        _STYLE_DONE = True
    return name


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write a figure as PNG, atomically (a failed write leaves the old file)."""
    return atomic_write_bytes(Path(path), figure_png(fig))


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def show_inline() -> None:
    """Let a notebook cell that returns a Figure display it as a PNG: the plots are bare
    Figures (no pyplot state), which IPython does not render until told how."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is not None:
        ip.display_formatter.formatters["image/png"].for_type(Figure, figure_png)


def new_figure(nrows: int = 1, ncols: int = 1, figsize=None):
    # A bare Figure, not a pyplot one: nothing global to leak or close, and Jupyter shows it
    # exactly once when a cell returns it.
    setup_style()
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols)


def plot_curves(history: list[dict]) -> Figure:
    """Loss, accuracy and ROC-AUC per epoch: training, validation (if any) and test pairs."""
    ep = [h["epoch"] for h in history]
    sets = [("train", "训练", "o-", "C0"), ("val", "验证", "^-", "C1"), ("test", "测试", "s-", "C2")]
    fig, ax = new_figure(1, 3, figsize=(15, 4))
    for key, name, style, color in sets:
        if f"{key}_loss" not in history[0]:
            continue
        ax[0].plot(ep, [h[f"{key}_loss"] for h in history], style, color=color, label=name)
        ax[1].plot(ep, [h[f"{key}_acc"] for h in history], style, color=color, label=name)
        if key != "train":
            ax[2].plot(ep, [h[f"{key}_auc"] for h in history], style, color=color, label=name)
    ax[0].set(title="损失曲线", xlabel="轮次 (epoch)", ylabel="BCE 损失")
    ax[1].set(title="准确率曲线", xlabel="轮次 (epoch)", ylabel="准确率")
    ax[2].set(title="ROC-AUC", xlabel="轮次 (epoch)", ylabel="ROC-AUC")
    for a in ax:
        a.legend()
    fig.tight_layout()
    return fig


def plot_curves_vs_seed(history: list[dict], seed_history: list[dict]) -> Figure:
    """Our per-epoch train loss / test accuracy beside the seed's published ones."""
    fig, ax = new_figure(1, 2, figsize=(12, 4))
    for hist, name, style in ((history, "本复现", "-"), (seed_history, "原实验", "--")):
        ep = [h["epoch"] for h in hist]
        ax[0].plot(ep, [h["train_loss"] for h in hist], style, marker="o", ms=3, label=f"{name} 训练")
        ax[0].plot(ep, [h["test_loss"] for h in hist], style, marker="s", ms=3, label=f"{name} 测试")
        ax[1].plot(ep, [h["train_acc"] for h in hist], style, marker="o", ms=3, label=f"{name} 训练")
        ax[1].plot(ep, [h["test_acc"] for h in hist], style, marker="s", ms=3, label=f"{name} 测试")
    ax[0].set(title="损失：本复现与原实验", xlabel="轮次 (epoch)", ylabel="BCE 损失")
    ax[1].set(title="准确率：本复现与原实验", xlabel="轮次 (epoch)", ylabel="准确率", ylim=(0.6, 1.0))
    for a in ax:
        a.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_confusion(cm: np.ndarray, title: str = "混淆矩阵（测试对）") -> Figure:
    fig, ax = new_figure(figsize=(4.8, 4))
    sns.heatmap(cm, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax,
                xticklabels=["不同", "相同"], yticklabels=["不同", "相同"])
    ax.set(title=title, xlabel="预测", ylabel="真实")
    fig.tight_layout()
    return fig


def plot_pairs(images: np.ndarray, idx_a, idx_b, target, labels=None, scores=None,
               n: int = 8, title: str = "样本对", per_row: int = 8) -> Figure:
    """A grid of n pairs, one pair per column (a above b, white ink on black as in MNIST), each pair
    framed in one colour (green: same digit, red: different), with digits and score if given."""
    n = min(n, len(idx_a))
    cols, blocks = min(n, per_row), -(-n // per_row)
    fig, ax = new_figure(2 * blocks, cols, figsize=(1.6 * cols, 4.3 * blocks))
    ax = np.asarray(ax).reshape(2 * blocks, cols)
    for a in ax.flat:
        a.set_axis_off()
    for j in range(n):
        block, col = divmod(j, per_row)
        same = float(target[j]) > 0.5
        for row, idx in enumerate((idx_a, idx_b)):
            cell = ax[2 * block + row, col]
            cell.imshow(np.asarray(images[int(idx[j])]).squeeze(), cmap="gray", vmin=0, vmax=1)
            cell.set_axis_on(), cell.set_xticks([]), cell.set_yticks([]), cell.grid(False)
            for spine in cell.spines.values():
                spine.set(color="C2" if same else "C3", linewidth=3)
        text = f"第 {j + 1} 对：" + ("相同" if same else "不同")
        if labels is not None:
            text += f"\n{int(labels[int(idx_a[j])])} 与 {int(labels[int(idx_b[j])])}"
        if scores is not None:
            text += f"\np = {float(scores[j]):.3f}"
        ax[2 * block, col].set_title(text, fontsize=9)
    fig.suptitle(f"{title}（每列一对，上下两张；绿框：同一数字，红框：不同数字；p：模型给出的相同概率）", fontsize=10)
    fig.tight_layout()
    return fig


def plot_class_distribution(train_labels, test_labels) -> Figure:
    fig, ax = new_figure(figsize=(8, 3.5))
    digits = np.arange(10)
    tr = np.bincount(np.asarray(train_labels), minlength=10)
    te = np.bincount(np.asarray(test_labels), minlength=10)
    ax.bar(digits - 0.2, tr, width=0.4, label=f"训练子集 ({tr.sum()})")
    ax.bar(digits + 0.2, te, width=0.4, label=f"测试子集 ({te.sum()})")
    ax.set(title="固定子集的类别分布", xlabel="数字", ylabel="图片数", xticks=digits)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_pair_balance(balances: dict[str, dict]) -> Figure:
    """Same / different counts for each named set of pairs."""
    fig, ax = new_figure(figsize=(6, 3.5))
    names = list(balances)
    x = np.arange(len(names))
    ax.bar(x - 0.2, [balances[k]["same"] for k in names], width=0.4, label="相同")
    ax.bar(x + 0.2, [balances[k]["different"] for k in names], width=0.4, label="不同")
    ax.set(title="配对的同类 / 异类平衡", ylabel="对数", xticks=x, xticklabels=names)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_roc_pr(c: dict) -> Figure:
    """ROC with a log-scaled false-positive axis (near 1.0 every curve looks the same on a
    linear one), and precision-recall zoomed to where it differs."""
    fig, ax = new_figure(1, 2, figsize=(11, 4.5))
    fpr, tpr = np.asarray(c["fpr"]), np.asarray(c["tpr"])
    floor = 1e-4
    ax[0].plot(np.maximum(fpr, floor), tpr, label=f"AUC = {c['auc']:.4f}")
    ax[0].set_xscale("log")
    ax[0].set(title="ROC 曲线（横轴对数）", xlabel="假阳性率", ylabel="真阳性率", xlim=(floor, 1),
              ylim=(max(0.0, float(np.interp(floor, fpr, tpr)) - 0.05), 1.005))
    precision, recall = np.asarray(c["precision"]), np.asarray(c["recall"])
    ax[1].plot(recall, precision, label=f"AP = {c['ap']:.4f}")
    body = precision[recall <= 0.995]                     # the last recall points fall to the base rate
    ax[1].set(title="精确率-召回率曲线（纵轴放大）", xlabel="召回率", ylabel="精确率",
              ylim=(max(0.5, float(body.min() if body.size else precision.min()) - 0.005), 1.001))
    for a in ax:
        a.legend(loc="lower right" if a is ax[0] else "lower left")
    fig.tight_layout()
    return fig


def plot_threshold(c: dict, chosen: float | None = None, chosen_on: str = "val") -> Figure:
    """Accuracy against the threshold on these pairs, with the threshold chosen elsewhere."""
    fig, ax = new_figure(figsize=(6.5, 4))
    ax.plot(c["thresholds"], c["threshold_acc"])
    if chosen is not None:
        where = "验证对" if chosen_on == "val" else "测试对（种子协议）"
        ax.axvline(chosen, ls="--", color="C3", label=f"在{where}上选定的阈值 {chosen:.3f}")
    ax.axvline(0.5, ls=":", color="grey", label="默认阈值 0.5")
    t, acc = np.asarray(c["thresholds"]), np.asarray(c["threshold_acc"])
    middle = acc[(t >= 0.02) & (t <= 0.98)]                # the extremes (all "same" / all "different") squash the rest
    low = float(middle.min()) if middle.size else float(acc.min())
    ax.set(title="准确率与判定阈值", xlabel="阈值（相同的概率）", ylabel="准确率",
           ylim=(max(0.5, low - 0.005), min(1.0, float(acc.max()) + 0.003)))
    ax.legend(loc="lower center")
    fig.tight_layout()
    return fig


def plot_score_hist(c: dict) -> Figure:
    fig, ax = new_figure(figsize=(6.5, 4))
    bins = np.linspace(0, 1, 41)
    ax.hist(c["prob"][c["target"] == 1], bins=bins, alpha=0.6, label="相同数字对")
    ax.hist(c["prob"][c["target"] == 0], bins=bins, alpha=0.6, label="不同数字对")
    ax.set(title="模型得分分布", xlabel="预测为相同的概率", ylabel="对数（对数刻度）", yscale="log")
    ax.legend()
    fig.tight_layout()
    return fig

def plot_embeddings(pca: np.ndarray, tsne: np.ndarray, labels: np.ndarray, title: str) -> Figure:
    """2-D projections (PCA, t-SNE) of embeddings, coloured by digit."""
    fig, ax = new_figure(1, 2, figsize=(12, 5.5))
    for a, xy, name in ((ax[0], pca, "PCA"), (ax[1], tsne, "t-SNE")):
        points = a.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, s=5, alpha=0.7)
        a.set(title=name, xticks=[], yticks=[])
    fig.colorbar(points, ax=ax, ticks=range(10), label="数字")
    fig.suptitle(title)
    return fig


def plot_retrieval(images: np.ndarray, labels: np.ndarray, queries: np.ndarray, top: np.ndarray,
                   logits: np.ndarray) -> Figure:
    """Each query (first column), its best gallery matches by the model's logit, and in the last
    column the best-scoring image of another digit (white ink on black, as MNIST)."""
    fig, ax = new_figure(len(queries), top.shape[1] + 1, figsize=(1.3 * (top.shape[1] + 1), 1.45 * len(queries)))
    for r, q in enumerate(queries):
        ax[r, 0].imshow(images[q, 0], cmap="gray")
        ax[r, 0].set_title(f"查询 {labels[q]}", fontsize=9, color="C0")
        for c, (g, z) in enumerate(zip(top[r], logits[r]), start=1):
            ax[r, c].imshow(images[g, 0], cmap="gray")
            ax[r, c].set_title(f"{labels[g]} · {z:.1f}", fontsize=9, color="black" if labels[g] == labels[q] else "C3")
    for a in ax.flat:
        a.set(xticks=[], yticks=[])
    fig.suptitle("近邻检索：每行为查询图片、得分最高的图库图片，最后一列是得分最高的其他数字\n"
                 "（数字 · logit，越大越像同一数字；logit 0 即概率 0.5；红色为不同数字）", fontsize=10)
    fig.tight_layout()
    return fig


def plot_reliability(before: dict, after: dict, temperature: float, title: str) -> Figure:
    """Reliability diagram (calibration.reliability): accuracy against confidence per bin, before
    and after temperature scaling, with the pair count per bin below."""
    fig, ax = new_figure(2, 1, figsize=(6.5, 6))
    for r, label, colour in ((before, "原始概率", "C0"), (after, f"温度缩放（T = {temperature:.2f}）", "C1")):
        n = np.asarray(r["count"])
        keep = n > 0
        ax[0].plot(np.asarray(r["confidence"])[keep], np.asarray(r["accuracy"])[keep], "o-", color=colour, label=label)
        centres = (np.asarray(r["edges"][:-1]) + np.asarray(r["edges"][1:])) / 2
        ax[1].bar(centres + (0.004 if colour == "C1" else -0.004), n, width=0.008, color=colour, label=label)
    ax[0].plot([0.5, 1], [0.5, 1], "--", color="grey", label="完美校准")
    ax[0].set(title=title, xlabel="置信度（预测类别的概率）", ylabel="准确率", xlim=(0.5, 1.0), ylim=(0.5, 1.0))
    ax[0].legend(loc="upper left")
    ax[1].set(xlabel="置信度", ylabel="配对数（对数刻度）", yscale="log", xlim=(0.5, 1.0))
    fig.tight_layout()
    return fig


show_inline()  # notebooks importing the plots see returned Figures without further setup
