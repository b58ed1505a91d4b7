# %% [markdown]
# # 04 画两个数字
#
# 在两个画板上各写一个数字（按住鼠标拖动；“笔宽”调粗细，“清除”重来）。每写完一笔，发布的模型就给出两张图是同一数字的概率，
# 并按运行在验证对上选定的阈值作出判定。画板下面是模型实际看到的 28×28 图片（与 `compare` 相同的转换：裁剪到笔迹、缩放到 20×20、
# 按质心居中），以及与每个数字的 5 张留出参考图比较后最像的三个数字。
#
# - `run_dir` 为空时用最好的发布模型（`reports/runs/improved`，没有时用 `reports/runs/seed_siamese`），与 `compare` 的默认相同。
# - 不用 JupyterLab 的读者：`make demo` 用 Voila 把本笔记本作为网页提供（127.0.0.1，带令牌）。
# - 这些模型在“不是 MNIST 自己的图片”上的表现见报告第 5 节的稳健性表。

# %%
from mnist_pairs.errors import refuse_unknown
from mnist_pairs.serve.draw import DrawDemo
from mnist_pairs.nbparams import notebook_parameters

# %% tags=["parameters"]
# parameters: literals only; the next cell reads this cell and papermill's -p values, nothing else
run_dir = ""  # 空：最好的发布模型

# %%
parameters = set(notebook_parameters())  # the names the parameters cell and -p set
refuse_unknown(parameters, ("run_dir",), "notebook parameter")

# %%
# NBVAL_IGNORE_OUTPUT
demo = DrawDemo(run_dir or None)
print(f"模型：{demo.run.dir.name}（{demo.run.cfg.model}），阈值 {demo.scorer.threshold:.3f}")
demo.widget
