#!/usr/bin/env bash
# One short run for a lent GPU machine (< 5 minutes): GPU == CPU on the golden cases (fp32), GPU DBSCAN ==
# sklearn, then the core benchmark on the GPU. The machine needs torch, scikit-learn, scipy and
# open_clip_torch; wheels placed in .whl/ (see the device README) are installed first when present.
#   scripts/gpu_check.sh            (CLIPTRASE_GOLDEN_DIR must point at the golden cases)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 scripts/gpu_check.py
python3 scripts/bench.py core --device cuda --repeats 10
