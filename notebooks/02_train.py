# %% [markdown]
# # 02 训练
#
# 用 `mnist_pairs.train.fit` 训练一个模型。运行目录 `experiments/<model>_<时间戳>/` 保存 `config.yaml`（含实际使用的设备与精度）、
# `history.json`、`best.pt`（按选择对选出）、`last.pt`（可续训）、`env.json`、`scores.npz` 与 `results.json`。
#
# - 快速默认：`params/quick.yaml`，即种子研究的配置只训练 2 轮。
# - 完整实验：`papermill 02_train.ipynb out.ipynb -p epochs 25`（在 `notebooks/` 内），或
#   `papermill notebooks/02_train.ipynb out.ipynb -p params_file params/seed_siamese.yaml`。
#
# 参数如何进入配置：参数单元（以 `# parameters` 开头，只含字面量）之后的单元只读取参数单元与 papermill 注入单元里写下的值——在别的单元里临时定义的变量（如 `threshold = 0.5`）不会进入配置，任何时候重新运行它都一样。参数单元里写下的配置键
# （例如 `epochs = 1`）与 papermill 的 `-p epochs 1` 一样覆盖参数文件中的值；不是配置键的名字（如 `epcohs`）、错误的类型与不可能的取值都会直接报错。

# %%
from mnist_pairs import plots, tables
from mnist_pairs.config import load_config
from mnist_pairs.nbparams import notebook_parameters

# %% tags=["parameters"]
# parameters: literals only; the next cell reads this cell and papermill's -p values, nothing else
params_file = "params/quick.yaml"  # 参数文件；-p 键 值 覆盖其中任何配置键
run_name = ""  # 空：自动命名 <model>_<YYYYmmdd_HHMMSS>
min_test_acc = 0.75  # 末尾的检查：所选检查点的测试准确率须高于此值；0 表示不检查（make study-smoke 的极小设置学不到这个水平）

# %% [markdown]
# 构建并校验配置（参数文件 + papermill 注入的配置键）。

# %%
parameters = notebook_parameters()  # this cell's and papermill's values only (not scratch cells)
cfg = load_config(parameters["params_file"], **{k: v for k, v in parameters.items() if k not in ("params_file", "min_test_acc")})
tables.config_table(cfg)

# %% [markdown]
# ## 数据
#
# 训练图片（验证协议下已留出验证图片）与固定的配对集合。

# %%
from mnist_pairs.data import load_data, train_pairs

data = load_data(cfg)
tables.balance_table(cfg, data)

# %%
a, b, y = train_pairs(data.train_labels, cfg.train_pairs, cfg.seed, epoch=1)
plots.plot_pairs(data.train_images.numpy(), a, b, y, data.train_labels, n=8, title="第 1 轮的前 8 个训练对")

# %% [markdown]
# ## 模型
#
# `new_model(cfg)` 按训练种子初始化模型；下面训练的正是这个对象。

# %%
from mnist_pairs.models import count_parameters
from mnist_pairs.train import new_model

model = new_model(cfg)
print(model)
print(f"可训练参数：{count_parameters(model):,}")

# %% [markdown]
# ## 训练
#
# 每轮：重新生成训练对、整批增强、混合精度训练，然后在验证对（选择用）与测试对（只记录）上评估；结束时对所选与最终模型在各配对集合上各计分一次。
# 中断后可用 `python -m mnist_pairs train --resume <运行目录>` 续训。

# %%
# NBVAL_IGNORE_OUTPUT
from mnist_pairs.train import fit

run = fit(cfg, data=data, model=model)  # 用上面载入的数据，训练上面构建的模型
run

# %% [markdown]
# ## 学习曲线

# %%
# NBVAL_IGNORE_OUTPUT
history = run.history
history.round(4)

# %%
plots.plot_curves(run.records)

# %% [markdown]
# ## 结果
#
# `run.model()` 是所选检查点（eval 模式）；`run.results` 是 results.json：所选与最终模型在每组配对上的准确率、ROC-AUC、在验证对上选定阈值时的准确率，以及留出对按图片自助法的 95% 区间。

# %%
# NBVAL_IGNORE_OUTPUT
best_model = run.model()
tables.results_table(run.results)

# %% [markdown]
# 精确的数值随硬件浮动，因此这里检查模型确实学到了东西；运行目录已记录，供 `03_analysis.ipynb` 使用。

# %%
assert run.results["best_test"]["acc"] > min_test_acc, run.results["best_test"]
f"检查通过：所选检查点的测试准确率 > {min_test_acc}"
