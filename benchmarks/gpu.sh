#!/usr/bin/env bash
# A short prepared check for a lent GPU (H100/H200), run from anywhere:
#   bash benchmarks/gpu.sh            (about 3-5 minutes; PY=/path/to/python to choose the interpreter)
# Without CUDA it prints "gpu.sh: skipped …" and exits 0, having changed nothing.
# 1. the 25-epoch seed configuration (params/seed_siamese.yaml under the seed's protocol: protocol=test,
#    no held-out pairs) on CUDA as `fit` runs it there: data resident on the GPU, precision auto
#    (fp16 autocast + GradScaler), TF32, matmul precision 'medium'; prints one JSON line per run;
# 2. the same with torch.compile;
# 3. bench_epoch.py on the GPU: the seed-style DataLoader pipeline against the project's, for the ratio.
# Everything it writes goes under experiments/gpu_<stamp>/ (run folders, bench_epoch_cuda.json): data only.
# Target: <= 15 s for all 25 epochs on one H100.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's mnist_pairs, installed or not
has_cuda() { $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }
if ! has_cuda && ! command -v nvidia-smi >/dev/null; then
  echo "gpu.sh: skipped (no CUDA device here)"; exit 0
fi
if ! $PY -c "import mnist_pairs.train, torchvision" 2>/dev/null; then
  $PY -m pip install -q -c constraints.txt -e . || { echo "gpu.sh: mnist_pairs cannot be imported and its install failed"; exit 1; }
fi
if ! has_cuda; then
  echo "gpu.sh: skipped ($PY's torch $($PY -c 'import torch; print(torch.__version__)') sees no CUDA device)"; exit 0
fi
$PY -c "import torch; print(torch.cuda.get_device_name(), 'torch', torch.__version__)"
$PY -m mnist_pairs fetch-data >/dev/null
out=experiments/gpu_$(date +%Y%m%d_%H%M%S)
for compile in false true; do
  t0=$(date +%s.%N)
  $PY -m mnist_pairs train --params params/seed_siamese.yaml --set device=cuda --set protocol=test \
      --set heldout_pairs=0 --set compile=$compile --set out_dir=$out --set run_name=compile_$compile | tail -2
  t1=$(date +%s.%N)
  $PY - "$t0" "$t1" "$out/compile_$compile" <<'PY'
import json, sys
from mnist_pairs.runs import Run
t0, t1, run = float(sys.argv[1]), float(sys.argv[2]), Run.open(sys.argv[3])
r, h = run.results, run.records
print(json.dumps({"run": str(run.dir), "compile": run.cfg.compile, "precision": run.cfg.precision, "gpu": run.env["gpu"],
                  "process_wall_s": round(t1 - t0, 1), "epochs_s": round(r["train_seconds"], 1),
                  "first_epoch_s": round(h[0]["seconds"], 1), "best_test_acc": r["best_test_acc"],
                  "selected_epoch": r["selected_epoch"]}))
PY
done
$PY benchmarks/bench_epoch.py --device cuda --rounds 3 --out $out/bench_epoch_cuda.json
