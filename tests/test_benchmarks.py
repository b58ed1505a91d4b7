"""The benchmark scripts run and print the fields the README and the report read (not timed).
They write data only: one JSON object, printed as the last line and written with --out."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mnist_pairs.paths import PROJECT_ROOT


def _last_json(*args: str) -> dict:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_bench_epoch_quick_reports_every_field(tmp_path):
    out = tmp_path / "bench_epoch.json"
    r = _last_json("benchmarks/bench_epoch.py", "--quick", "--pairs", "192", "--rounds", "1", "--out", str(out))
    for key in ("seed_style_s_per_epoch", "project_s_per_epoch", "project_fp32_s_per_epoch", "speedup",
                "compute_only_s_per_epoch", "gflops_achieved", "flop_per_epoch_T", "peak_rss_mb", "threads",
                "shared_s_per_epoch", "shared_speedup", "fused_s_per_epoch", "fused_speedup",
                "compute_only_fused_s_per_epoch"):
        assert r[key] > 0, key
    assert abs(r["speedup"] - r["seed_style_s_per_epoch"] / r["project_s_per_epoch"]) < 0.01
    assert abs(r["fused_speedup"] - r["seed_style_s_per_epoch"] / r["fused_s_per_epoch"]) < 0.01
    assert r["quick"] is True and r["rounds"] == 1 and r["device"] == "cpu"
    assert r["precision"] in ("fp32", "bf16") and r["autocast"] == {"fp32": "off", "bf16": "bfloat16"}[r["precision"]]
    assert isinstance(r["cpu_native_bf16"], bool)
    # the command as run: the ISA caps of this environment (the AVX2 imitation), if any, come first
    assert r["isa_caps"] == {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if k in os.environ}
    caps = "".join(f"{k}={v} " for k, v in r["isa_caps"].items())
    assert r["command"].startswith(caps + "python benchmarks/bench_epoch.py --quick --pairs 192") and r["measured"]
    assert "table_zh" not in r
    assert json.loads(out.read_text()) == r  # the file holds exactly the printed data


def test_bench_infer_reports_both_modes(tmp_path):
    r = _last_json("benchmarks/bench_infer.py", "--reps", "1", "--run", str(tmp_path / "none"))
    assert r["direct_pairs_per_s"] > 0 and r["cached_pairs_per_s"] > r["direct_pairs_per_s"]
    assert r["gallery"] == 1000 and r["queries"] == 100 and r["cpu"] and r["command"] and r["measured"]


def test_bench_infer_times_the_onnx_export_of_a_real_run():
    r = _last_json("benchmarks/bench_infer.py", "--reps", "1", "--run", "reports/runs/seed_siamese")
    assert r["onnx_direct_pairs_per_s"] > 0 and r["onnx_cached_pairs_per_s"] > r["onnx_direct_pairs_per_s"]
    assert r["onnx_precision"] == "fp32" and r["onnxruntime"]


TINY_RECIPE = ["--set", "epochs=1", "--set", "train_pairs=512", "--set", "test_pairs=200", "--set", "val_pairs=200",
               "--set", "val_images=100", "--set", "heldout_pairs=400", "--set", "batch_size=64", "--set", "num_threads=1"]


def test_time_to_accuracy_times_each_seed_in_its_own_process(tmp_path):
    r = _last_json("benchmarks/bench_time_to_accuracy.py", "--params", "params/smoke.yaml", "--seeds", "0,1",
                   *TINY_RECIPE, "--out-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "tta_{precision}.json"))
    assert [x["seed"] for x in r["runs"]] == [0, 1] and r["recipe"] == "params/smoke.yaml"
    for x in r["runs"]:
        assert x["wall_s"] > x["train_s"] > 0 and x["epochs"] == 1 and x["precision"] == r["precision"]
        assert (PROJECT_ROOT / x["run_dir"] / "results.json").is_file() and f"seed{x['seed']}" in x["run_dir"]
        assert x["reached"] == (x["heldout_acc"] >= 0.993)
    assert r["heldout_acc"]["mean"] == pytest.approx(sum(x["heldout_acc"] for x in r["runs"]) / 2)
    assert r["wall_s"]["mean"] == pytest.approx(sum(x["wall_s"] for x in r["runs"]) / 2)
    assert r["met"] is False and r["accuracy_met"] is False      # one tiny epoch is far from 99.3 %
    assert r["fused_build_s"] is None and r["parameters"] == 192449
    assert json.loads((tmp_path / f"tta_{r['precision']}.json").read_text()) == r
    assert sorted(p.name for p in (tmp_path / "runs").iterdir() if p.is_dir()) == ["seed0", "seed1"]  # a sweep's layout


def test_time_to_accuracy_refuses_to_time_a_finished_run(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "benchmarks"))
    from bench_time_to_accuracy import timed_run

    (tmp_path / "seed3").mkdir()
    (tmp_path / "seed3" / "results.json").write_text("{}")
    with pytest.raises(SystemExit, match="already holds a finished run"):
        timed_run("params/smoke.yaml", 3, [], tmp_path)


@pytest.mark.parametrize("args, message", [
    (["--params", "params/smoke.yaml", "--seeds", "a-b"], "--seeds expects a range"),
    (["--params", "params/smoke.yaml", "--seeds", "1,1"], "repeats a value"),
    (["--params", "params/smoke.yaml", "--seeds", "0", "--set", "epcohs=1"], "did you mean 'epochs'"),
    (["--params", "params/no_such.yaml", "--seeds", "0"], "no_such.yaml"),
], ids=["seeds_text", "seeds_repeat", "override", "params"])
def test_time_to_accuracy_bad_arguments_fail_in_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "benchmarks"))
    from bench_time_to_accuracy import main

    with pytest.raises(SystemExit) as e:
        main([*args, "--out-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and ": error: " in err[-1] and message in err[-1], err
    assert not (tmp_path / "runs").exists()


def test_time_to_accuracy_target_needs_the_mean_every_seed_and_the_time(monkeypatch):
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "benchmarks"))
    from bench_time_to_accuracy import verdict

    run = lambda acc, wall, precision="fp32": {"heldout_acc": acc, "wall_s": wall, "precision": precision}
    assert verdict([run(0.994, 290), run(0.993, 280), run(0.9935, 300)])["met"] is True
    low_seed = verdict([run(0.996, 200), run(0.9915, 200), run(0.996, 200)])        # mean 0.9947, one seed below 0.992
    assert low_seed["heldout_acc"]["mean"] >= 0.993 and low_seed["accuracy_met"] is False
    slow = verdict([run(0.995, 130, "bf16"), run(0.995, 125, "bf16")])            # bf16 allows 120 s
    assert slow["accuracy_met"] is True and slow["time_met"] is False and slow["target"]["wall_s"] == 120
    with pytest.raises(SystemExit, match="different precisions"):
        verdict([run(0.995, 100, "bf16"), run(0.995, 100)])
