"""The report's Chinese labels: each published figure's title and what to look at in it, the
speed levers' and the open-set pair types' names as the report prints them."""

# each published run's figure (analysis.py): its title, and what to look at in it
FIGURES = [("curves", "学习曲线（训练、验证与测试对）", "训练曲线与验证、测试曲线的差距：差距越拉越大说明过拟合。"),
           ("curves_vs_seed", "与原实验学习曲线的对比", "两条测试曲线的走势与终点；原实验是单次运行。"),
           ("confusion_matrix", "混淆矩阵", "两种错误（把不同判为相同、把相同判为不同）是否大致相当。"),
           ("roc_pr", "ROC 与精确率-召回率曲线", "横轴对数：低假阳性率时还能找回多少同类对。"),
           ("threshold", "准确率与判定阈值", "曲线顶部有多平：平则说明阈值取 0.5 附近都可以。"),
           ("score_hist", "同类 / 异类对的得分分布", "两堆得分之间重叠的多少，重叠处就是误判。"),
           ("sample_pairs", "测试样本对", "每列一对，框的颜色表示真实标签，p 是模型给出的相同概率。"),
           ("hardest_errors", "最难的误判样本对", "模型最有把握却判错的配对，人眼是否也会犹豫。"),
           ("embeddings", "编码器嵌入的二维投影（留出图片）", "同一数字是否聚成一团，哪些数字挨得近。"),
           ("retrieval", "近邻检索（留出图片）", "最后一列与前五列的 logit 差距：差距越大，越不容易混淆。")]
# bench_levers.json's row names (English identifiers) as the report prints them
LEVER_NAMES = {"fp32 NCHW": "fp32，NCHW", "fp32 channels_last": "fp32，channels_last", "bf16 NCHW": "bf16，NCHW",
               "bf16 channels_last (default)": "bf16，channels_last（默认）", "bf16 channels_last, 1 thread": "bf16，channels_last，1 个线程",
               "bf16 channels_last + torch.compile": "bf16，channels_last + torch.compile",
               "batched augmentation (512 images)": "整批数据增强（512 张图片）",
               "evaluation, pairs at batch 256": "评估：逐对计算，批大小 256",
               "evaluation, cached embeddings (default)": "评估：缓存嵌入（默认）"}

PAIR_TYPES = {"seen–seen same": "已见–已见，同类", "seen–seen different": "已见–已见，异类",
              "unseen–unseen different": "未见数字之间（异类）", "unseen–seen": "未见数字对已见数字（异类）"}

# the run groups of the picked-vs-final observation (study/recipes.py), as the report names them
RECIPE_GROUPS = {"confirm_improved__validation": "改进配置的确认运行",
                 "lever_combined_e100__validation": "改进配置的探索运行",
                 "confirm_fast__validation": "上一个快速配方的确认（fp32）",
                 "confirm_fast__validation_bf16": "上一个快速配方的确认（bf16）"}
