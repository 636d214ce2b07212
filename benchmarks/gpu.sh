#!/usr/bin/env bash
# Run the generation and training benchmarks on a CUDA machine and write benchmarks/results/gpu.md and
# gpu.json, within a 5-minute budget. Run from anywhere: bash benchmarks/gpu.sh
# Training runs 500 iterations (scaled to 10,000 in the table) and generation 5 x 10^6 muons per measurement.
# The XGBoost evaluations stay on the CPU, as in the library.
# NOTE: not yet run on a GPU. The sizes are estimates chosen to fit 5 minutes, and `timeout` stops the run
# at 290 s if they do not.
set -euo pipefail

repository="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repository"
if [[ -f .venv/bin/activate ]]; then
    # shellcheck disable=SC1091
    source .venv/bin/activate
fi

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "gpu.sh: nvidia-smi not found, so this is no CUDA machine; run benchmarks/run_all.py for the CPU figures" >&2
    exit 1
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

python - <<'EOF'
import sys
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
if not gpus:
    sys.exit("gpu.sh: TensorFlow sees no GPU: install a CUDA build of TensorFlow (pip install 'tensorflow[and-cuda]')")
print(f"TensorFlow {tf.__version__} sees {len(gpus)} GPU(s): {[gpu.name for gpu in gpus]}")
EOF

# Stopping both benchmarks at 290 s leaves the checks above time inside the 5-minute budget.
timeout 290 python benchmarks/run_all.py --sizes gpu
