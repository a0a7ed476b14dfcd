#!/usr/bin/env bash
# One short run for a lent GPU machine (< 5 minutes): GPU == CPU on the golden cases (fp32), GPU DBSCAN ==
# sklearn, chunked == untiled standard-protocol scoring on the GPU, the core benchmark on the GPU, then (when
# mmseg imports) the standard protocol's ADE-150 cell (scoring step + harness ratio, 64 images) and the
# harness table for ViT-B/16: standard + paper224 x fp32/fp16/bf16, 256 synthetic 512x683 images per cell,
# batch 8. The machine needs
# torch, scikit-learn, scipy and open_clip_torch (+ mmengine/mmcv/mmseg/hydra-core for the table); wheels
# placed in .whl/ (see the device README) are installed first when present.
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
if python3 -c "import mmseg, hydra" 2>/dev/null; then
  python3 scripts/bench.py vocab --device cuda --datasets ade150 --images 64 --workers 8
  python3 scripts/bench.py table --device cuda --protocols standard,paper224 --backbones ViT-B-16 \
    --precisions fp32,fp16,bf16 --images 256 --workers 8 --text-prompts 0
else
  echo "mmseg/hydra not importable: harness table skipped (carry their wheels in .whl/)"
fi
