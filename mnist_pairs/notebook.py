"""Glue for the numbered notebooks: every notebook cell is one call here and a display.

papermill only *warns* about parameters a notebook does not declare and injects them all
the same, so `config_from_parameters(globals())` collects every literal the parameters
cells left in the namespace and validates it: a misspelt name, a wrong type or an
impossible value fails the notebook here, before any work starts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import torch
from matplotlib.figure import Figure

from . import data as D
from . import plots
from .analysis import Analysis, analyze, publish  # noqa: F401  (analyze: used by 03)
from .config import Config, ConfigError, load_config
from .paths import REPORTS_DIR, atomic_write_text, resolve
from .train import fit, latest_run, read_history


def _show_figures_inline() -> None:
    """Let a cell that returns a matplotlib Figure display it as a PNG. The plots are bare
    Figures (no pyplot state), which IPython does not render until told how."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is not None:
        ip.display_formatter.formatters["image/png"].for_type(Figure, plots.figure_png)


_show_figures_inline()
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
_LITERALS = (str, int, float, bool, type(None))
LATEST_POINTER = "latest_run.txt"  # written under cfg.out_dir by 02, read by 03


def parameters(namespace: Mapping[str, Any], allowed: set[str] | None = None) -> dict[str, Any]:
    """The notebook's parameters: public literal names in the namespace (cells after the
    config cell assign no bare literals, so none of theirs is taken for a parameter)."""
    params = {k: v for k, v in namespace.items()
              if not k.startswith("_") and k not in _IPYTHON_NAMES and isinstance(v, _LITERALS)}
    if allowed is not None:
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ConfigError(f"unknown notebook parameter(s) {unknown}; this notebook takes {sorted(allowed)}")
    return params


def config_from_parameters(namespace: Mapping[str, Any]) -> Config:
    """params_file, then every parameter that is not None on top of it (None: keep the file's)."""
    params = parameters(namespace)
    params_file = params.pop("params_file", None)
    return load_config(params_file, **{k: v for k, v in params.items() if v is not None})


def config_table(cfg: Config) -> pd.DataFrame:
    return pd.DataFrame({"值": {k: repr(v) for k, v in cfg.to_dict().items()}})


# --------------------------------------------------------------------------- 01 data

def fetch_mnist(cfg: Config) -> Path:
    return D.ensure_mnist(cfg.data_root or None)


def checksum_table(cfg: Config) -> pd.DataFrame:
    status = D.verify_mnist(cfg.data_root or None)
    return pd.DataFrame([{"文件": k, "字节": v[1], "公布的 md5": v[0], "校验": status[k]}
                         for k, v in D.MNIST_FILES.items()]).set_index("文件")


def load_subset(cfg: Config) -> D.Subset:
    return D.load_subset(cfg.subset_fraction, cfg.seed, cfg.data_root or None)


def subset_table(subset: D.Subset) -> pd.DataFrame:
    rows = []
    for split, labels, index in (("训练", subset.train_labels, subset.train_index),
                                 ("测试", subset.test_labels, subset.test_index)):
        rows.append({"集合": split, "图片数": len(labels), "索引 sha256": D._digest_array(index),
                     **{str(d): int(c) for d, c in enumerate(torch.bincount(labels, minlength=10))}})
    return pd.DataFrame(rows).set_index("集合")


def class_distribution_figure(subset: D.Subset):
    return plots.plot_class_distribution(subset.train_labels, subset.test_labels)


def epoch_pairs_figure(subset: D.Subset, cfg: Config, epoch: int = 1, augmented: bool = False, n: int = 10):
    """The first n training pairs of an epoch, raw or as the model sees them (augmented)."""
    a, b, y = D.train_pairs(subset.train_labels, cfg.train_pairs, cfg.seed, epoch)
    images = subset.train_images
    if augmented:
        p = D.draw_aug(2 * len(y), cfg, D.aug_generator(cfg.seed, epoch))
        idx = torch.cat([a[:n], b[:n]])
        sel = torch.cat([torch.arange(n), len(y) + torch.arange(n)])
        images = D.augment(images[idx], D.AugParams(p.theta[sel], p.kernel[sel]))
        a, b = torch.arange(n), n + torch.arange(n)
        labels = torch.cat([subset.train_labels[idx[:n]], subset.train_labels[idx[n:]]])
        return plots.plot_pairs(images.numpy(), a, b, y[:n], labels, n=n, title=f"第 {epoch} 轮训练对（增强后）")
    return plots.plot_pairs(images.numpy(), a, b, y, subset.train_labels, n=n, title=f"第 {epoch} 轮训练对（原图）")


def pair_balance_table(subset: D.Subset, cfg: Config) -> pd.DataFrame:
    rows = {}
    for epoch in (1, 2):
        a, b, y = D.train_pairs(subset.train_labels, cfg.train_pairs, cfg.seed, epoch)
        rows[f"训练 第{epoch}轮"] = {**D.pair_balance(y), "自配对": int((a == b).sum())}
    a, b, y = D.test_pairs(subset.test_labels, cfg.test_pairs, cfg.seed, cfg.data_root or None, cfg.subset_fraction)
    rows["测试"] = {**D.pair_balance(y), "自配对": int((a == b).sum())}
    return pd.DataFrame(rows).T.rename(columns={"pairs": "对数", "same": "同类", "different": "异类"})


def pair_balance_figure(table: pd.DataFrame):
    return plots.plot_pair_balance({k: {"same": r["同类"], "different": r["异类"]} for k, r in table.iterrows()})


# --------------------------------------------------------------------------- 02 train

def train(cfg: Config) -> Path:
    """fit(), then record the run folder for 03_analysis."""
    run_dir = fit(cfg)
    atomic_write_text(cfg.out_path / LATEST_POINTER, str(run_dir) + "\n")
    return run_dir


def history_table(run_dir: str | Path) -> pd.DataFrame:
    return pd.DataFrame(read_history(run_dir)).set_index("epoch").round(4)


def curves_figure(run_dir: str | Path):
    return plots.plot_curves(read_history(run_dir))


def check_run(run_dir: str | Path, min_test_acc: float) -> str:
    """Assert the run learned: its best test accuracy passed the floor."""
    best = max(h["test_acc"] for h in read_history(run_dir))
    if not best >= min_test_acc:
        raise AssertionError(f"best test accuracy {best:.4f} is below the floor {min_test_acc}")
    return f"检查通过：最佳测试准确率 ≥ {min_test_acc}"


# --------------------------------------------------------------------------- 03 analysis

def resolve_run(run_dir: str = "", out_dir: str = "experiments") -> Path:
    """The run to analyse: the argument, else the one 02 recorded, else the newest."""
    if run_dir:
        p = resolve(run_dir)
        if not (p / "best.pt").is_file():
            raise FileNotFoundError(f"{p} is not a finished run folder (no best.pt)")
        return p
    pointer = resolve(out_dir) / LATEST_POINTER
    if pointer.is_file():
        p = Path(pointer.read_text().strip())
        if (p / "best.pt").is_file():
            return p
    return latest_run(out_dir)


def analysis_table(a: Analysis) -> pd.DataFrame:
    s = a.summary()
    keys = ["run", "model", "best_epoch", "test_acc", "test_auc", "test_loss", "average_precision",
            "best_threshold", "best_threshold_acc", "n_errors", "n_test_pairs"]
    return pd.DataFrame({"值": {k: (round(s[k], 4) if isinstance(s[k], float) else s[k]) for k in keys}})


def write_outputs(a: Analysis, publish_as: str = "") -> Path:
    """Publish to reports/runs/<publish_as>/ and rewrite reports/report_zh.md; or, for a
    quick run (publish_as ""), write analysis.json and a report inside the run folder.
    Returns the report (or, without a Siamese run to report on, the analysis folder)."""
    from .report import write_report

    published = REPORTS_DIR / "runs"
    if publish_as:
        publish(a, publish_as)
        out, figures, bench = REPORTS_DIR / "report_zh.md", REPORTS_DIR / "figures", REPORTS_DIR / "benchmarks"
        runs = {"siamese": published / "seed_siamese", "concat": published / "seed_concat"}
    else:
        out, figures, bench = a.run_dir / "report" / "report_zh.md", a.run_dir / "report" / "figures", None
        a.save(a.run_dir, figures)
        runs = {"siamese": published / "seed_siamese", "concat": published / "seed_concat", a.cfg.model: a.run_dir}
    if not (runs["siamese"] / "history.json").is_file():
        return runs[a.cfg.model]  # the report is about the Siamese net: nothing to write yet
    return write_report(runs, out, figures, benchmark=bench and bench / "bench_epoch.json")
