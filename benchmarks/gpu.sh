#!/usr/bin/env bash
# A short prepared check for a lent GPU (H100/H200), run from the project root:
#   bash benchmarks/gpu.sh            (about 3-5 minutes including the install)
# 1. the full 25-epoch seed configuration on CUDA: data resident on the GPU, float16 autocast
#    + GradScaler, TF32, matmul precision 'medium' (all as `fit` does on CUDA); prints total seconds;
# 2. the same with torch.compile;
# 3. bench_epoch.py on the GPU: the seed-style DataLoader pipeline against the project's, for the ratio.
# Target: <= 15 s for all 25 epochs on one H100.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
if ! $PY -c "import mnist_pairs, torch; assert torch.cuda.is_available()" 2>/dev/null; then
  $PY -m pip install -q -c constraints.txt -e . || { echo "install failed"; exit 1; }
fi
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device here'; print(torch.cuda.get_device_name())"
$PY -m mnist_pairs fetch-data >/dev/null
stamp=$(date +%Y%m%d_%H%M%S)
for compile in false true; do
  t0=$(date +%s.%N)
  $PY -m mnist_pairs train --params params/seed_siamese.yaml --set device=cuda --set compile=$compile \
      --set run_name=gpu_compile_${compile}_$stamp | tail -3
  t1=$(date +%s.%N)
  $PY - "$t0" "$t1" "experiments/gpu_compile_${compile}_$stamp" <<'PY'
import json, sys
t0, t1, run = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
h = json.load(open(f"{run}/history.json"))
best = max(h, key=lambda r: r["test_acc"])
print(json.dumps({"run": run, "process_wall_s": round(t1 - t0, 1), "epochs_s": round(sum(r["seconds"] for r in h), 1),
                  "best_test_acc": best["test_acc"], "best_epoch": best["epoch"]}))
PY
done
$PY benchmarks/bench_epoch.py --device cuda --rounds 3 | tail -12
