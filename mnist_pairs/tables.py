"""Chinese tables (pandas DataFrames) shared by the notebooks and the report.

    config_table(cfg); checksum_table(root); subset_table(subset); balance_table(cfg, data)
    history_table(run); results_table(run.results)
"""
from __future__ import annotations

import pandas as pd
import torch

from .data import pair_balance, train_pairs
from .subset import digest
from .mnist import MNIST_FILES, verify_mnist


def config_table(cfg) -> pd.DataFrame:
    return pd.DataFrame({"值": {k: repr(v) for k, v in cfg.to_dict().items()}})


def checksum_table(root) -> pd.DataFrame:
    status = verify_mnist(root)
    return pd.DataFrame([{"文件": k, "字节": v[1], "公布的 md5": v[0], "校验": status[k]}
                         for k, v in MNIST_FILES.items()]).set_index("文件")


def subset_table(subset) -> pd.DataFrame:
    rows = []
    for split, labels, index in (("训练", subset.train_labels, subset.train_index),
                                 ("测试", subset.test_labels, subset.test_index)):
        rows.append({"集合": split, "图片数": len(labels), "索引 sha256": digest(index),
                     **{str(d): int(c) for d, c in enumerate(torch.bincount(labels, minlength=10))}})
    return pd.DataFrame(rows).set_index("集合")


def balance_table(cfg, data) -> pd.DataFrame:
    """Same / different / self pairs: two training epochs and every fixed pair set of a run."""
    rows = {}
    for epoch in (1, 2):
        a, b, y = train_pairs(data.train_labels, cfg.train_pairs, cfg.seed, epoch)
        rows[f"训练 第{epoch}轮"] = {**pair_balance(y), "自配对": int((a == b).sum())}
    names = {"val": "验证", "test": "测试", "heldout": "留出", "confirm": "确认"}
    for name, s in data.sets.items():
        rows[names[name]] = {**pair_balance(s.y), "自配对": int((s.a == s.b).sum())}
    return pd.DataFrame(rows).T.rename(columns={"pairs": "对数", "same": "同类", "different": "异类"})


def history_table(run) -> pd.DataFrame:
    return run.history.round(4)


def results_table(results: dict) -> pd.DataFrame:
    """Accuracy / AUC of the selected and the final model on each pair set."""
    names = {"val": "验证对", "test": "测试对", "heldout": "留出对", "confirm": "确认集"}
    rows = {}
    for key, m in results.items():
        if isinstance(m, dict) and "acc" in m:
            which, name = key.split("_", 1)
            rows[f"{'所选' if which == 'best' else '最终'}模型 · {names[name]}"] = {
                "对数": m["pairs"], "准确率": round(m["acc"], 4), "ROC-AUC": round(m["auc"], 4),
                f"阈值 {results['threshold']:.3f} 时准确率": round(m["acc_at_threshold"], 4),
                "95% 区间（按图片自助法）": str([round(x, 4) for x in m["ci95"]]) if "ci95" in m else ""}
    return pd.DataFrame(rows).T
