#!/usr/bin/env bash
# The GPU check: one short, prepared script for a lent GPU machine (about 15 minutes in all).
# That machine reaches no registry and has torch, numpy, pandas, pillow, scikit-learn, OpenCV,
# onnxruntime, psutil and nvidia-ml-py, but not pydantic, mlflow, optuna or
# plotly: the wheels it lacks travel in shared/wheels (made beforehand by
# `bench/gpu_check.sh --wheels`, on a machine with the registry). Writes to $OUT:
#   cuda-tests.txt  the tests marked `cuda` (pytest -m cuda)
#   gpu.json        images/s, achieved TFLOP/s against the card's bf16 dense peak, GPU memory and
#                   utilisation for one study iteration and modern_gpu (bench/gpu_train.py)
#   nvidia-smi.txt  the card
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=shared/wheels
if [ "${1:-}" = "--wheels" ]; then
  mkdir -p "$WHEELS"
  python3 -m pip download -q -d "$WHEELS" --only-binary=:all: --python-version 3.11 \
    pydantic pydantic-core annotated-types typing-inspection typing-extensions pyyaml tqdm pytest pluggy iniconfig
  du -sh "$WHEELS"
  exit 0
fi
OUT=${OUT:-reports/gpu}
mkdir -p "$OUT"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -m pip install -q --no-index --find-links "$WHEELS" pydantic pyyaml tqdm pytest > "$OUT/install.txt" 2>&1
export PYTHONPATH=$PWD
timeout 240 python3 -m pytest -m cuda -q -p no:cacheprovider tests/test_cuda.py > "$OUT/cuda-tests.txt" 2>&1
echo "cuda tests: exit $?" >> "$OUT/cuda-tests.txt"
timeout 420 python3 bench/gpu_train.py --out "$OUT/gpu.json" --steps "${STEPS:-200}" > "$OUT/gpu_train.txt" 2>&1
echo "gpu_train: exit $?" >> "$OUT/gpu_train.txt"
tail -5 "$OUT/cuda-tests.txt" "$OUT/gpu_train.txt"
