"""The seed's optimisation story measured: one change at a time from the seed configuration.

    rows = ablation_rows(summary["groups"])        # the report's table, paired against the seed config

Each variant is a params file `params/ablate_<name>.yaml` (the seed configuration plus one
change) swept over training seeds under the validation protocol. The difference to the seed
configuration is paired: the same training seeds of `seed_siamese__validation`, seed by seed,
so the interval of the mean difference leaves out what the seeds share.

The project's own levers toward an improved model (`params/lever_*.yaml`) follow one rule,
written before their runs: a lever is adopted only if its paired difference in *validation*
accuracy against the configuration it changes has a 95 % interval above 0. That configuration
is the seed's, or, for a lever stacked on another (`EXTENDS`, also named in its params file),
that lever's. Test and held-out pairs are scored, never used for the decision.

Seeds: the ablation and the levers of step ⑦ run on training seeds 0-2, those of step ⑧ on 0-4
(`LATE_SEEDS` names a group extended to more seeds after its first numbers were seen).
The improved configuration is the one `IMPROVED_FROM` names, adopted if `improved_check` finds
its paired validation Δ against the seed configuration above 0; its confirmation on fresh seeds
and data is confirmation.py's. When each rule was committed, and which results had been seen by
then, is data: `RULE_EVENTS` (commit times) beside the runs' finish times, which the report prints
as its timeline, with every rule changed after results were seen.
"""
from __future__ import annotations

from .. import stats

BASELINE = "seed_siamese__validation"
# group -> (seed step, what changes from the seed configuration), in the order of the seed's §5
VARIANTS = {
    "seed_concat__validation": ("①", "左右拼接 CNN（而非 Siamese）"),
    "ablate_bce_sigmoid__validation": ("②", "sigmoid 输出上的普通 BCE（而非 BCEWithLogits）"),
    "ablate_adam__validation": ("②", "Adam，权重衰减作 L2（而非 AdamW）"),
    "ablate_fp32__validation": ("②", "不用混合精度（fp32）"),
    "ablate_random_pairs__validation": ("③", "随机配对，约 1/10 同类（而非平衡配对）"),
    "ablate_no_augment__validation": ("④", "不做数据增强"),
    "ablate_no_dropout__validation": ("④", "头部不用 dropout"),
    "ablate_constant_lr__validation": ("⑤", "恒定学习率（而非 ReduceLROnPlateau）"),
    "ablate_epochs10__validation": ("⑥", "10 轮（而非 25 轮）"),
    "ablate_epochs50__validation": ("⑥", "50 轮（而非 25 轮）"),
    "lever_shared_e25__validation": ("⑦", "共享编码：每批 256 张图各编码一次，批内全部同类对与等量异类对，25 轮"),
    "lever_shared_e100__validation": ("⑦", "共享编码，100 轮（编码器前向次数仍少于原实验配置）"),
    "lever_cosine_ema__validation": ("⑦", "余弦学习率 + 权重 EMA（衰减 0.99/步），25 轮"),
    "lever_deep_shared_e100__validation": ("⑧", "更深的编码器（siamese_deep，189,025 参数），共享编码 100 轮"),
    "lever_shared_cosine_e100__validation": ("⑧", "余弦学习率（而非 ReduceLROnPlateau），共享编码 100 轮"),
    "lever_shared_elastic_e100__validation": ("⑧", "再加弹性形变增强（最大位移 3 像素，σ = 4 像素），共享编码 100 轮"),
    "lever_shared_supcon_e100__validation": ("⑧", "BCE 再加 0.5 × 监督对比损失（温度 0.1，批内嵌入），共享编码 100 轮"),
    "lever_combined_e100__validation": ("⑧", "以上四项同时使用（更深编码器、余弦学习率、弹性形变、监督对比），共享编码 100 轮"),
}
# lever -> the lever it is stacked on and compared with (the rest: BASELINE)
EXTENDS = {f"lever_{name}__validation": "lever_shared_e100__validation"
           for name in ("deep_shared_e100", "shared_cosine_e100", "shared_elastic_e100", "shared_supcon_e100",
                        "combined_e100")}
# the improved configuration (params/improved.yaml) is this lever's, under the rule of b533418 (RULE_EVENTS)
IMPROVED_FROM = "lever_combined_e100__validation"
# groups given more seeds after their first seeds' numbers were seen: group -> the seeds seen then
LATE_SEEDS = {"lever_shared_e100__validation": (0, 1, 2)}

# Commits that wrote or changed a rule about the improved configuration, with their commit times
# (UTC, `git log -1 --format=%cI`; tests/test_confirmation.py checks them against git when it can).
# timeline() puts each beside the runs that had finished before it (summary.json `finished`).
RULE_EVENTS = [
    {"commit": "94af57c", "time": "2026-11-29T06:48:05+00:00",
     "what": "⑧ 起每项改进用训练种子 0–4（⑦ 用 0–2）"},
    {"commit": "d536e44", "time": "2026-11-29T07:06:16+00:00",
     "what": "写定改进配置的组合规则：只有“共享编码，100 轮”本身相对原实验配置被采纳，才把 ⑧ 中被采纳的各项叠加成改进配置"},
    {"commit": "b533418", "time": "2026-11-29T08:20:13+00:00",
     "what": "改变规则：改进配置取 ⑧ 中验证对均值最高的一行（“以上四项同时使用”），按 ⑦ 的规则直接与原实验配置配对比较",
     "changed": True},
    {"commit": "ed9234e", "time": "2026-11-29T19:32:12+00:00",
     "what": "登记确认计划：确认集、训练种子 5–9、判定规则（mnist_pairs/study/confirmation.py）"},
    {"commit": "0fbee7a", "time": "2026-11-29T19:33:13+00:00",
     "what": "登记发布哪一个确认运行（验证对准确率最高的训练种子）"},
]
RUN_TIMES_ZONE = "UTC"  # run files' `started` (train.py) and summary rows' `finished` (summary.py) are UTC: paths.utc_time


TIMELINE_GROUPS = ["lever_shared_e100__validation", *EXTENDS, "confirm_seed__validation", "confirm_improved__validation"]


def timeline(groups: dict, names=TIMELINE_GROUPS) -> list[dict]:
    """Each RULE_EVENTS entry with, per group of `names`, the seeds whose runs had finished before it."""
    out = []
    for e in RULE_EVENTS:
        t = e["time"][:19]                                  # naive UTC, comparable with `finished`
        before = {g: sorted(r["seed"] for r in groups[g]["runs"] if r["finished"] < t) for g in names if g in groups}
        out.append({"changed": False} | e | {"time_utc": t.replace("T", " "),
                        "finished_before": {g: s for g, s in before.items() if s}})
    return out


def adopted(row: dict) -> bool | None:
    """The rule for the project's levers: the paired Δ of validation accuracy has a 95 % CI above 0."""
    d = (row.get("delta") or {}).get("val_acc")
    return None if d is None else d["ci95"][0] > 0
METRICS = ("val_acc", "test_acc", "heldout_acc")


def paired(group: dict, base: dict, key: str) -> dict | None:
    """Interval of the mean of group − baseline over the training seeds both have (≥ 2)."""
    def by_seed(g: dict) -> dict[int, float]:
        return {r["seed"]: r[key] for r in g["runs"] if r.get(key) is not None}

    return stats.paired(by_seed(group), by_seed(base))


def _first_seeds(group: dict, ref: dict, seeds: tuple[int, ...]) -> dict:
    """What had been seen before a group was given more seeds: its seeds and paired Δ val on them."""
    first = {**group, "runs": [r for r in group["runs"] if r["seed"] in seeds]}
    return {"seeds": list(seeds), "val_acc": paired(first, ref, "val_acc")}


def improved_check(groups: dict) -> dict | None:
    """The rule the improved configuration was judged by (after the change above): the paired Δ of
    its lever against the seed configuration, and the Δ of lever_shared_e100 that the first rule needed."""
    lever, base = groups.get(IMPROVED_FROM), groups.get(BASELINE)
    if lever is None or base is None:
        return None
    first = groups.get(EXTENDS[IMPROVED_FROM])
    delta = {k: paired(lever, base, k) for k in METRICS}
    return {"lever": VARIANTS[IMPROVED_FROM][1], "delta": delta, "adopted": adopted({"delta": delta}),
            "first_rule_delta": paired(first, base, "val_acc") if first else None,
            "first_rule_adopted": adopted({"delta": {"val_acc": paired(first, base, "val_acc")}}) if first else None}


def ablation_rows(groups: dict) -> list[dict]:
    """One row per measured variant: step, change, seeds, the group's stats, the configuration
    it is compared with (`versus`: None for the seed's) and the paired Δ against it."""
    base = groups.get(BASELINE)
    if base is None:
        return []
    rows = [{"step": "②", "change": "原实验最终配置（基线）", "group": base, "delta": None, "versus": None,
             "lever": False, "late": None}]
    for name, (step, change) in VARIANTS.items():
        ref = EXTENDS.get(name, BASELINE)
        if name in groups and ref in groups:
            g = groups[name]
            rows.append({"step": step, "change": change, "group": g,
                         "versus": None if ref == BASELINE else VARIANTS[ref][1].split("（")[0], "lever": name.startswith("lever_"),
                         "late": _first_seeds(g, groups[ref], LATE_SEEDS[name]) if name in LATE_SEEDS else None,
                         "delta": {k: paired(g, groups[ref], k) for k in METRICS}})
    for row in rows:
        row["adopted"] = adopted(row) if row["lever"] else None
        row["sure"] = {k: excludes_zero(d) for k, d in (row["delta"] or {}).items()}
        if row["late"]:
            row["late"]["adopted"] = adopted({"delta": {"val_acc": row["late"]["val_acc"]}})
    return rows


def excludes_zero(st: dict | None) -> bool | None:
    """Whether a paired Δ's 95 % interval leaves out 0 (a difference these seeds can tell), None if unmeasured."""
    return None if st is None else not st["ci95"][0] <= 0 <= st["ci95"][1]
