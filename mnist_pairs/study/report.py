"""The Chinese report: `collect()` gathers facts from files, a Jinja2 template words them.

    facts = collect()                    # a plain dict: published runs, summary, benchmarks…
    write_report()                       # renders templates/report_zh.md.j2 -> reports/report_zh.md

Every number and every sentence about precision, hardware, timing or reproducibility comes
from run files (config.yaml, history.json, env.json, results.json), reports/summary.json
(`make sweep`), the benchmarks, or the model (layer table). The only typed numbers are the
seed study's published figures in seed_reference.py, quoted for comparison.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..data import load_data, pair_balance
from .ablation import IMPROVED_FROM, ablation_rows, excludes_zero, improved_check, paired, timeline
from .confirmation import PLAN, outcome, published_seed, report_facts
from .recipes import PUBLISHED_RUN, published_as_planned, report_facts as recipes_facts, trained_as
from .speed import report_facts as speed_facts
from .calibration import PUBLISHED_JSON, calibrate_published
from .figures import write_published_reliability
from .findings import (all_above, best_by_validation, finished_groups, gap, judged, rank_in, interval_holds, matters,
                       precision_reason, retrieval_misses, seed_place, setup, temperature_side)
from .formats import ci_range, pct, pm, signed_text
from .labels_zh import FIGURES, LEVER_NAMES, PAIR_TYPES
from .repro import DETERMINISM_FIX, before_determinism_fix, is_committed_run, repro_check
from ..mnist import MNIST_FILES
from ..models import build_model, parameter_count
from ..paths import PROJECT_ROOT, PUBLISHED, REPORTS_DIR, Reports, atomic_write_text, resolve
from ..runs import Run, sha256
from ..seed_reference import SEED, SEED_HISTORY

TEMPLATE = Path(__file__).parent / "templates" / "report_zh.md.j2"
IMPROVED_FIGURES = ("threshold", "embeddings", "retrieval")


def _json(path) -> dict | None:
    p = resolve(path)
    return json.loads(p.read_text()) if p.is_file() else None


def layer_rows(model_name: str) -> list[list[str]]:
    """Each leaf layer with its output shape and parameter count, from a real forward pass."""
    model = build_model(model_name).eval()
    rows, hooks = [], []
    for name, mod in model.named_modules():
        if len(list(mod.children())) == 0:
            def hook(m, inp, out, name=name):
                rows.append([f"`{name}`", m.__class__.__name__, "×".join(map(str, tuple(out.shape)[1:])),
                             f"{sum(p.numel() for p in m.parameters()):,}"])
            hooks.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28), torch.zeros(1, 1, 28, 28))
    for h in hooks:
        h.remove()
    return rows


def run_facts(run: Run) -> dict:
    h = run.records
    return {"name": run.dir.name, "dir": run.dir, "cfg": run.cfg.to_dict(), "env": run.env, "history": h,
            "results": run.results, "wall": sum(r["seconds"] for r in h), "s_per_epoch": sum(r["seconds"] for r in h) / len(h),
            "lrs": sorted({r["lr"] for r in h}, reverse=True), "selected": h[run.results["selected_epoch"] - 1],
            "precision_reason": precision_reason(run.env), "isa_cap": run.env.get("onednn_max_cpu_isa"),
            "weights_sha256": run.digests().get("best.pt")}


def precision_paths(groups: dict) -> dict | None:
    """The precisions (and CPUs' native bf16) of the improved configuration's exploration runs and of its
    confirmation runs; `differ` when the two sets of runs did not all take the same precision path."""
    explore, confirm = groups.get(IMPROVED_FROM), groups.get(PLAN["improved"])
    if not explore or not confirm:
        return None
    path = lambda g: sorted({(r["precision"], bool(r.get("cpu_native_bf16"))) for r in g["runs"]})
    return {"explore": path(explore), "confirm": path(confirm), "differ": path(explore) != path(confirm),
            "explore_mean": explore["mean"]["heldout_acc"], "confirm_mean": confirm["mean"]["heldout_acc"]}


def lock_facts(published_runs: list[tuple[str, dict | None]]) -> dict:
    """requirements.lock's digest, and for each published run whether it was trained in an environment
    installed from this lock ("same"), another one ("other", with its digest) or before runs recorded it."""
    from ..hardware import lock_sha256

    now = lock_sha256()
    rows = []
    for what, run in published_runs:
        if run is not None:
            had = run["env"].get("requirements_lock_sha256")
            rows.append({"what": what, "state": "same" if had == now else "other" if had else "unrecorded",
                         "sha256": had})
    return {"sha256": now, "runs": rows, "all_same": bool(rows) and all(r["state"] == "same" for r in rows)}


def _pick(groups: dict, name: str, model: str, protocol: str) -> dict | None:
    """The group `name`, else the first plain MNIST group of that model and protocol (not an
    ablation, open-set or other-dataset group)."""
    if name in groups:
        return groups[name]
    return next((g for g in groups.values() if g["model"] == model and g["protocol"] == protocol
                 and g.get("dataset", "mnist") == "mnist" and not g.get("train_classes")
                 and not g["name"].startswith("ablate_")), None)


def collect(reports_dir: Path = REPORTS_DIR, published: dict[str, str] = PUBLISHED) -> dict:
    """Every fact the report states, from the files under reports_dir (a plain dict).
    `published` names the published run of each role ("siamese", "concat", "improved")."""
    rp = Reports(Path(reports_dir))
    runs = {role: Run(rp.run(name)) for role, name in published.items() if (rp.run(name) / "results.json").is_file()}
    S = run_facts(runs["siamese"])
    C = run_facts(runs["concat"]) if "concat" in runs else None
    data = load_data(runs["siamese"].cfg, log=lambda m: None)
    sub = data.subset
    summary = _json(rp.summary) or {"groups": {}}
    groups = summary["groups"]
    test_group = _pick(groups, "seed_siamese__test", "siamese", "test")
    val_siamese = _pick(groups, "seed_siamese__validation", "siamese", "validation")
    val_concat = _pick(groups, "seed_concat__validation", "concat", "validation")
    benches = bench_jsons(rp)
    bench = benches[0]
    I = run_facts(runs["improved"]) if "improved" in runs else None
    # the published model is the plan's `best` confirmation run (recipes.PUBLISHED_RUN), trained again by make study
    pub_group = groups.get(PUBLISHED_RUN["group"])
    best_recipe = trained_as(I, pub_group)     # else it is compared with no group of the recipe
    pub_group = pub_group if best_recipe else None
    cf = report_facts(groups, rp)
    I_committed = I is not None and is_committed_run(I, pub_group)
    I_repro = repro_check(I, pub_group) if I and pub_group and not I_committed else None
    rel = lambda p: os.path.relpath(p, reports_dir)
    rows = ablation_rows(groups)
    fused = fused_checks(groups)
    protocol_delta = paired(test_group, val_siamese, "heldout_acc") if test_group and val_siamese else None
    seed_row = SEED_HISTORY[SEED["best_epoch"] - 1]
    aug, calibration, infer = _json(rp.aug_selection), _json(rp.calibration), _json(rp.benchmarks / "bench_infer.json")
    chosen_aug = aug["candidates"][aug["chosen"]] if aug else None
    aug_keys = ("aug_degrees", "aug_translate", "aug_scale_min", "aug_scale_max", "aug_blur_prob", "aug_blur_sigma_max",
                "aug_interpolation")
    figure = lambda folder, name: rel(rp.figures(folder) / name) if (rp.figures(folder) / name).is_file() else None
    tl = [ev | {"finished": finished_groups(ev["finished_before"], groups)} for ev in timeline(groups)]
    return {
        "seed": SEED, "seed_row": seed_row, "run_dirty": S["env"]["git_commit"].endswith("-dirty"),
        "seed_table_mismatch": seed_row["test_acc"] != SEED["best_test_acc"] or seed_row["test_loss"] != SEED["best_test_loss"],
        "mnist_files": [(k, v[1], v[0]) for k, v in MNIST_FILES.items()],
        "n_train_source": sub.n_train_source, "n_test_source": sub.n_test_source,
        "n_train": len(sub.train_labels), "n_test": len(sub.test_labels), "n_heldout_images": len(sub.heldout_labels),
        "n_fit": len(data.train_labels), "train_counts": torch.bincount(sub.train_labels, minlength=10).tolist(),
        "index_sha": sub.index_sha256, "balance": {k: pair_balance(s.y) for k, s in data.sets.items()},
        "val_images": len(data.sets["val"].labels) if "val" in data.sets else 0,
        "val_counts": torch.bincount(data.sets["val"].labels, minlength=10).tolist() if "val" in data.sets else None,
        "layers": layer_rows("siamese"), "n_params": parameter_count("siamese"),
        "concat_params": parameter_count("concat"),
        "S": S, "C": C, "test_group": test_group, "val_siamese": val_siamese,
        "val_concat": val_concat, "seed_place": seed_place(test_group, SEED["best_test_acc"]),
        "confirm_baseline": groups.get(PLAN["baseline"]), "matters": matters(rows),
        "improved_all_above": all_above(groups.get(PLAN["improved"]), groups.get(PLAN["baseline"])),
        # where the published seed's committed run ranks, said of this model only when it is that run or its twin
        "improved_rank": rank_in(I, pub_group) if I_committed or (I_repro or {}).get("twin", {}).get("identical") else None,
        "previous_improved": previous_improved(groups.get(PLAN["improved"])),
        "headline_figure": figure("findings", "headline.png"), "forest_figure": figure("findings", "forest.png"),
        "improved_figure": figure("findings", "improved_curves.png"),
        "determinism_fix": DETERMINISM_FIX, "before_fix": before_determinism_fix(groups),
        "all_cpus": sorted({r["cpu"] for g in groups.values() for r in g["runs"]}),
        "protocol_delta": protocol_delta, "protocol_delta_clear": excludes_zero(protocol_delta),
        "unseen": groups.get("unseen_digits__validation"),
        "openset_rows": openset_rows(groups.get("unseen_digits__validation")), "fashion": groups.get("fashion_siamese__validation"),
        "ablation": rows, "best_row": best_by_validation(rows),
        "target_heldout": PLAN["heldout_target"], "improved": groups.get(IMPROVED_FROM), "improved_check": improved_check(groups),
        "improved_holds_target": bool(groups.get(IMPROVED_FROM))
        and interval_holds(groups[IMPROVED_FROM], "heldout_acc", PLAN["heldout_target"]),
        "timeline": tl, "confirmation": cf,
        "setups": {"val_siamese": setup(val_siamese), "confirm_baseline": setup(groups.get(PLAN["baseline"]))},
        "confirm_gap": gap(cf["verdict"].get("delta_confirm") if cf and cf.get("verdict") else None),
        "paths": precision_paths(groups),
        "lock": lock_facts([("原实验配置", S), ("拼接基线", C), ("发布模型", I)]),
        "improved_run": I, "improved_planned": published_as_planned(I, pub_group), "published_run": PUBLISHED_RUN,
        "improved_best_recipe": best_recipe,
        "improved_is_confirmation_run": I_committed, "improved_repro": I_repro,
        "repro": repro_check(S, val_siamese) if val_siamese else None,
        "aug": aug,
        "same_aug": chosen_aug is not None and all(chosen_aug[k] == S["cfg"][k] for k in aug_keys if k in chosen_aug),
        "bench": bench, "levers": _json(rp.benchmarks / "bench_levers.json"),
        "bench_avx2": benches[1], "bench_more": benches[2:], "cpu_targets": cpu_targets(benches),
        "cpu_target": (CPU_TARGET_SPEEDUP, CPU_TARGET_S), "fused_checks": fused, "speed": speed_facts(groups, rp, len(sub.train_labels)),
        "recipes": recipes_facts(groups, rp),
        "rounding_matters": any(fc["same_cpu"] and fc["sure"]["heldout_acc"] for fc in fused),
        "robustness": judged(measured_now(_json(rp.robustness), rp)),
        "infer": infer, "infer_run": infer_run(infer),
        "study": _json(rp.study),
        "calibration": calibration, "temperature_side": temperature_side(calibration),
        "calibration_figure": figure("calibration", "reliability.png"),
        "figures": [(t, path, caption(see), n) for n, t, see in FIGURES if (path := figure(published["siamese"], f"{n}.png"))],
        "concat_curves": figure(published["concat"], "curves.png"),
        "improved_run_figures": [(t, path, caption(see), n) for n, t, see in FIGURES
                                 if n in IMPROVED_FIGURES and (path := figure(published["improved"], f"{n}.png"))],
        "retrieval": {role: retrieval_facts(rp.figures(name)) for role, name in published.items()},
        "calibration_published": published_calibration(rp, published, figure),
        "history_path": rel(S["dir"] / "history.json"),
    }


def measured_now(out: dict | None, rp: Reports) -> dict | None:
    """robustness.json with only the runs it measured on the weights now published under their name
    (the sha256 of reports/runs/<name>/best.pt); the others are named in `stale`."""
    if not out:
        return None
    now = {k: r for k, r in out["runs"].items() if r.get("weights_sha256") and (rp.run(k) / "best.pt").is_file()
           and r["weights_sha256"] == sha256((rp.run(k) / "best.pt").read_bytes())}
    return out | {"runs": now, "stale": [k for k in out["runs"] if k not in now]} if now else None


def previous_improved(group: dict | None) -> dict | None:
    """The model published before the `best` recipe's: the improved configuration's confirmation run that
    confirmation.published_seed picked (highest validation accuracy), as its committed files hold it."""
    if not group or not group["runs"]:
        return None
    seed = published_seed(group)
    run = next(r for r in group["runs"] if r["seed"] == seed)
    return {"seed": seed, "group": group["group"], "epoch": run["selected_epoch"], "heldout_acc": run["heldout_acc"],
            "final_heldout_acc": run.get("final_heldout_acc"), "before_fix": run["finished"] < DETERMINISM_FIX["time"],
            **rank_in({"cfg": {"seed": seed}}, group)}


def caption(see: str) -> str:
    """A figure's "what to look at" (labels_zh.FIGURES) as the report prints it after "读图：": its own colon
    becomes a dash, so that a caption never chains two colons."""
    return see.replace("：", "——")


def retrieval_facts(folder: Path) -> dict | None:
    """What a published run's retrieval figure shows (<folder>/retrieval.json, written with the figure by
    analysis.publish): k, and the best-k matches of another digit than the query's (findings.retrieval_misses)."""
    r = _json(folder / "retrieval.json")
    return None if r is None else {"k": r["k"], "misses": retrieval_misses(r)}


def published_calibration(rp: Reports, published: dict[str, str], figure) -> dict | None:
    """calibration_published.json (calibration.calibrate_published) per published run, in PUBLISHED's order,
    with the role's name, its reliability figure, and the side of 1 its fitted T lies on ("over": above 1, the raw
    probabilities over-confident; "under": below 1, under-confident)."""
    c = _json(rp.root / PUBLISHED_JSON)
    if not c:
        return None
    names = {"siamese": "原实验配置", "concat": "拼接基线", "improved": "改进模型"}
    side = lambda t: "over" if t > 1 else "under" if t < 1 else None
    rows = [c["runs"][name] | {"name": name, "what": names.get(role, role), "side": side(c["runs"][name]["temperature"]),
                               "figure": figure(name, "reliability.png")}
            for role, name in published.items() if name in c["runs"]]
    return {"bins": c["bins"], "command": c["command"], "runs": rows}


def infer_run(infer: dict | None) -> str | None:
    """The run folder the inference benchmark measured: its `--run`, else bench_infer.py's default."""
    if not infer:
        return None
    words = infer["command"].split()
    return words[words.index("--run") + 1] if "--run" in words else f"reports/runs/{PUBLISHED['siamese']}"


CPU_TARGET_SPEEDUP, CPU_TARGET_S = 4.0, 12.0  # issue 11: seed-faithful mode, >= 4x the seed-style pipeline, <= 12 s/epoch


def bench_jsons(reports: Reports) -> list[dict | None]:
    """Every epoch benchmark: this project's reference machine, its AVX2 imitation, then the others."""
    d = reports.benchmarks
    return [_json(d / "bench_epoch.json"), _json(d / "bench_epoch_avx2.json")] + \
        [_json(p) for p in sorted(d.glob("bench_epoch_*.json")) if p.name != "bench_epoch_avx2.json"]


def cpu_targets(benches: list[dict | None]) -> list[dict]:
    """Per CPU benchmark JSON: the fastest seed-faithful pipeline it measured (default precision, fp32,
    or default precision with fused blocks) and whether it meets issue 11's CPU targets."""
    rows = []
    for b in (b for b in benches if b and b.get("device", "cpu") == "cpu"):
        options = [(b["project_s_per_epoch"], f"默认精度（{b['precision']}）")]
        if b.get("project_fp32_s_per_epoch"):   # the bench table's "本项目，fp32" row (with a default of fp32: a second timing)
            options.append((b["project_fp32_s_per_epoch"], "fp32"))
        if b.get("fused_s_per_epoch"):
            options.append((b["fused_s_per_epoch"], f"默认精度（{b['precision']}）+ 融合块（`fused_blocks: true`）"))
        s, setting = min(options)
        x = b["seed_style_s_per_epoch"] / s
        rows.append({"cpu": b["cpu"], "caps": " / ".join(b.get("isa_caps", {}).values()) or "无", "setting": setting,
                     "s": s, "x": x, "met_x": x >= CPU_TARGET_SPEEDUP, "met_s": s <= CPU_TARGET_S, "quick": b.get("quick"),
                     "fused_measured": len(options) > 1})
    return rows


# the fused blocks' accuracy checks: (group with fused_blocks, the same configuration without): the
# control run on the same machine, and the project's earlier group of that configuration
FUSED = [("fused_fp32__validation", "fused_fp32_control__validation"), ("fused_fp32__validation", "ablate_fp32__validation"),
         ("fused_bf16__validation", "fused_bf16_control__validation"), ("fused_bf16__validation", "seed_siamese__validation")]


def fused_checks(groups: dict) -> list[dict]:
    """Each fused group against its unfused configuration, paired by seed, with the CPUs and
    precision of each group's runs (a different CPU rounds differently, as fusing does)."""
    facts = lambda grp, key: sorted({str(r[key]) for r in grp["runs"]})
    out = []
    for g, b in ((g, b) for g, b in FUSED if g in groups and b in groups):
        delta = {k: paired(groups[g], groups[b], k) for k in ("val_acc", "heldout_acc")}
        out.append({"group": groups[g], "base": groups[b], "params": g.split("__")[0], "base_params": b.split("__")[0],
                    "delta": delta, "sure": {k: excludes_zero(d) for k, d in delta.items()},
                    "epochs": groups[g]["config"]["epochs"], "cpus": facts(groups[g], "cpu"),
                    "base_cpus": facts(groups[b], "cpu"), "same_cpu": facts(groups[g], "cpu") == facts(groups[b], "cpu"),
                    "precision": facts(groups[g], "precision")})
    return out


def openset_rows(group: dict | None) -> list[tuple]:
    """(label, pairs, acc interval, acc-at-threshold interval) per open-set pair type of a group:
    the seen–seen types, one same-digit type per unseen digit ("8–8"), then the different-digit ones."""
    o = (group or {}).get("openset", {})
    kinds = [k.split(".")[1] for k in o if k.startswith("pair_types.") and k.endswith(".acc")]
    same_unseen = sorted(k for k in kinds if k not in PAIR_TYPES)
    labels = {**{k: PAIR_TYPES[k] for k in list(PAIR_TYPES)[:2]}, **{k: f"{k}（未见，同类）" for k in same_unseen},
              **{k: PAIR_TYPES[k] for k in list(PAIR_TYPES)[2:]}}
    return [(label, int(o[f"pair_types.{k}.pairs"]["mean"]), o[f"pair_types.{k}.acc"],
             o[f"pair_types.{k}.acc_at_threshold"]) for k, label in labels.items() if k in kinds]


README_MARKERS = ("<!-- headline: generated by `python -m mnist_pairs summarize`; do not edit -->",
                  "<!-- end of headline -->")


def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE.parent), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(code=lambda x: f"`{x}`", pct=pct, f4=lambda x: f"{x:.4f}", f2=lambda x: f"{x:.2f}", f1=lambda x: f"{x:.1f}",
                       f0=lambda x: f"{x:.0f}", thousands=lambda x: f"{x:,}")
    env.filters.update(ci_range=ci_range, signed=signed_text)
    env.globals.update(pm=pm, LEVER_NAMES=LEVER_NAMES)
    return env


def render(facts: dict) -> str:
    return _environment().get_template(TEMPLATE.name).render(**facts)


def readme_tables(groups: dict, benches: list[dict | None]) -> str:
    """reports/tables.md: every group's result and the speed tables, from the benchmark and summary JSON."""
    return _environment().get_template("readme_tables.md.j2").render(
        bench=benches[0], groups=groups, cpu_targets=cpu_targets(benches),
        cpu_target=(CPU_TARGET_SPEEDUP, CPU_TARGET_S)).strip()


def headline_facts(groups: dict, benches: list[dict | None]) -> dict:
    """What the README's three headline lines state, decided here (the template only words it)."""
    verdict = outcome(groups)
    imp = groups.get(PLAN["improved"])
    target = PLAN["heldout_target"]
    return {"seed": SEED, "test_group": _pick(groups, "seed_siamese__test", "siamese", "test"),
            "val_group": _pick(groups, "seed_siamese__validation", "siamese", "validation"),
            "improved": imp, "verdict": verdict, "target": target,
            "short_by": verdict["short_by"] if verdict else None,
            "bench": benches[0]}


def update_readme(readme: Path = PROJECT_ROOT / "README.md", reports_dir: Path = REPORTS_DIR) -> Path:
    """Write reports/tables.md, and the README's headline (between README_MARKERS)."""
    rp = Reports(Path(reports_dir))
    groups, benches = (_json(rp.summary) or {"groups": {}})["groups"], bench_jsons(rp)
    atomic_write_text(rp.tables, _environment().get_template("tables.md.j2").render(tables=readme_tables(groups, benches)))
    lines = _environment().get_template("readme_headline.md.j2").render(**headline_facts(groups, benches)).strip()
    text = readme.read_text(encoding="utf-8")
    start, end = README_MARKERS
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return atomic_write_text(readme, f"{head}{start}\n{lines}\n{end}{tail}")


def write_report(reports_dir: Path = REPORTS_DIR, published: dict[str, str] = PUBLISHED) -> Path:
    """reports_dir/report_zh.md from the files under reports_dir; `published` as in collect. First the
    published runs' calibration (calibration_published.json and figures/<run>/reliability.png), which
    the report prints, from their saved scores."""
    rp = Reports(Path(reports_dir))
    calibrate_published(rp, published)
    write_published_reliability(rp)
    return atomic_write_text(rp.report, render(collect(reports_dir, published)))
