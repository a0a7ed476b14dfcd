#!/usr/bin/env bash
# Install cliptrase and its stack into a virtual environment (default: ./.venv).
#
#   scripts/install.sh [VENV_DIR]
#
# mmcv 2.1.0 has no binary wheel; it is built from source once (~14 min on 2 cores) and the wheel is
# cached under ${CLIPTRASE_WHEEL_CACHE:-~/.cache/cliptrase/wheels}, keyed by python tag, torch version and
# mmcv version, so later installs take seconds. See docs/install.md for the traps this avoids.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv}"
# absolute: the wheel is repacked from inside the build folder, where a relative venv path would not resolve
mkdir -p "$(dirname "$VENV")" && VENV="$(cd "$(dirname "$VENV")" && pwd)/$(basename "$VENV")"
TORCH_VERSION="2.14.1"
TORCHVISION_VERSION="0.29.1"
MMCV_VERSION="2.1.0"
PYTHON="${PYTHON:-python3}"
CACHE="${CLIPTRASE_WHEEL_CACHE:-$HOME/.cache/cliptrase/wheels}"

log() { printf '[install %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

log "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION"
"${PIP[@]}" install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
"${PIP[@]}" install -q "setuptools>=77.0.3,<81" ninja wheel "mmengine==0.10.7"

PYTAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
KEY="mmcv${MMCV_VERSION}-torch${TORCH_VERSION}-${PYTAG}-cpuops"
WHEEL_DIR="$CACHE/$KEY"
if ! "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
  if ! ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
    log "no cached mmcv wheel for $KEY: building from source (~14 min on 2 cores)"
    BUILD="$(mktemp -d)"
    trap 'rm -rf "$BUILD"' EXIT
    "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation -d "$BUILD/src" "mmcv==$MMCV_VERSION"
    tar xzf "$BUILD/src/mmcv-$MMCV_VERSION.tar.gz" -C "$BUILD/src"
    # torch >= 2.10 headers need C++20; mmcv 2.1.0 hard-codes -std=c++17.
    sed -i "s/'-std=c++17'/'-std=c++20'/g" "$BUILD/src/mmcv-$MMCV_VERSION/setup.py"
    # CPU-only ops everywhere (also on GPU machines): nothing here needs mmcv's CUDA ops.
    (
      export CUDA_VISIBLE_DEVICES="" FORCE_CUDA=0 MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}"
      "${PIP[@]}" wheel -v --no-build-isolation --no-deps -w "$BUILD/wheels" "$BUILD/src/mmcv-$MMCV_VERSION" 2>&1 \
        | grep --line-buffered -E '^\s*\[[0-9]+/[0-9]+\]|Building|Created wheel|error' \
        | while IFS= read -r line; do log "mmcv build: ${line:0:150}"; done
    )
    WHL="$(ls "$BUILD"/wheels/mmcv-"$MMCV_VERSION"-*.whl)"
    # Shrink the wheel: strip debug symbols of the compiled extension (82 MB -> 2 MB).
    (cd "$BUILD/wheels" && mkdir x && cd x && "$PY" -m zipfile -e "$WHL" . \
      && find . -name '_ext*.so' -exec strip --strip-debug {} + \
      && mkdir -p "$BUILD/packed" && "$PY" -m wheel pack . -d "$BUILD/packed" >/dev/null)
    mkdir -p "$WHEEL_DIR"
    cp "$BUILD"/packed/mmcv-"$MMCV_VERSION"-*.whl "$WHEEL_DIR/"
    log "cached $(ls "$WHEEL_DIR")"
  else
    log "using cached mmcv wheel $(ls "$WHEEL_DIR")"
  fi
  "${PIP[@]}" install -q --no-deps "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl
  "${PIP[@]}" install -q "addict" "packaging" "Pillow" "pyyaml" "yapf" "opencv-python"
fi

log "installing cliptrase (editable) with its dependencies"
"${PIP[@]}" install -q -e "$ROOT[dev]"
"$PY" -c "import mmcv.ops, mmseg.models, mmseg.datasets, open_clip, cliptrase" \
  && log "ok: $("$PY" -c 'import torch, mmcv, mmseg, open_clip; print("torch", torch.__version__, "mmcv", mmcv.__version__, "mmseg", mmseg.__version__, "open_clip", open_clip.__version__)')"
