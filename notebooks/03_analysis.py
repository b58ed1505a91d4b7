# %% [markdown]
# # 03 分析
#
# 读取一次运行保存的得分（`scores.npz`，运行结束时计算一次，不再重新评估模型），给出混淆矩阵、ROC 与 PR 曲线、准确率-阈值曲线、
# 同类 / 异类得分分布和最难的误判样本对。
#
# - `run_dir` 为空时分析 `02_train.ipynb` 最近完成的运行。
# - `publish_as` 非空时（`make study` 用 `"seed_siamese"` / `"seed_concat"`），把运行文件与图表发布到 `reports/runs/<publish_as>/` 与 `reports/figures/<publish_as>/`；报告由 `make study` 在最后统一生成一次。
# - `reports_dir` 非空时发布到该文件夹而不是 `reports/`（`make study` 先发布到暂存副本，全部完成后才移入 `reports/`）。
# - 只适用于有编码器的模型的小节（嵌入、近邻检索）对拼接模型（concat）给出一行说明，而不是报错。

# %%
from mnist_pairs import tables
from mnist_pairs.analysis import analyze, publish
from mnist_pairs.errors import refuse_unknown
from mnist_pairs.runs import Run
from mnist_pairs.nbparams import notebook_parameters

# %% tags=["parameters"]
# parameters: literals only; the next cell reads this cell and papermill's -p values, nothing else
run_dir = ""  # 空：02 最近完成的运行
publish_as = ""  # 非空：发布到 reports/runs/<publish_as>/
reports_dir = ""  # 空：项目的 reports/
embedded_images = 2000  # 嵌入与近邻检索图所用的留出图片数（make study-smoke 用更少）

# %%
parameters = set(notebook_parameters())  # the names the parameters cell and -p set
refuse_unknown(parameters, ("run_dir", "publish_as", "reports_dir", "embedded_images"), "notebook parameter")
run = Run.open(run_dir) if run_dir else Run.latest()

# %% [markdown]
# ## 所选检查点的得分

# %%
# NBVAL_IGNORE_OUTPUT
analysis = analyze(run, embedded_images)
tables.results_table(analysis.results)

# %% [markdown]
# ## 混淆矩阵
#
# 行是真实标签，列是预测（阈值 0.5）。

# %%
analysis.figure("confusion_matrix")

# %% [markdown]
# ## ROC 与精确率-召回率曲线

# %%
analysis.figure("roc_pr")

# %% [markdown]
# ## 准确率与判定阈值
#
# 曲线是测试对上的准确率；虚线是在验证对上选定的阈值（验证协议），测试对从不参与选择。

# %%
analysis.figure("threshold")

# %% [markdown]
# ## 得分分布

# %%
analysis.figure("score_hist")

# %% [markdown]
# ## 最难的误判样本对
#
# 模型最有把握却判错的测试对，标题给出真实关系、两张图的数字与模型得分。

# %%
analysis.figure("hardest_errors")

# %% [markdown]
# ## 编码器嵌入
#
# 所选模型的编码器对前 `embedded_images` 张留出图片的 128 维嵌入，投影到二维（PCA 与 t-SNE），按数字着色。`analysis.embeddings()` 返回嵌入本身，可以接着探索。拼接模型没有编码器，这里只给出一行说明。

# %%
analysis.figure("embeddings")

# %% [markdown]
# ## 近邻检索
#
# 每个数字取一张留出图片作查询，其余留出图片作图库：编码器对每张图片只运行一次，判别头给出每一对的得分。

# %%
analysis.figure("retrieval")

# %% [markdown]
# ## 发布

# %%
# NBVAL_IGNORE_OUTPUT
publish(analysis, publish_as, reports_dir) if publish_as else "未发布（publish_as 为空）"
