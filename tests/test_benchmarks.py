"""The benchmark scripts run and print the fields the README and the report read (not timed).
They write data only: one JSON object, printed as the last line and written with --out."""
from __future__ import annotations

import json
import subprocess
import sys

from mnist_pairs.paths import PROJECT_ROOT


def _last_json(*args: str) -> dict:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_bench_epoch_quick_reports_every_field(tmp_path):
    out = tmp_path / "bench_epoch.json"
    r = _last_json("benchmarks/bench_epoch.py", "--quick", "--rounds", "1", "--out", str(out))
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
    assert r["command"].startswith("python benchmarks/bench_epoch.py --quick") and r["measured"]
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
