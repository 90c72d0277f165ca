#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one call of at most 10 minutes (scripts/gpu_figures.py).
#
#   bash scripts/gpu_figures.sh prepare        # here, with PyPI: wheels the GPU image lacks, into .whl/
#   bash scripts/gpu_figures.sh run OUT        # on the GPU machine (the repository root, .whl/ carried)
#   bash scripts/gpu_figures.sh small OUT      # on a CPU: the same code paths at tiny sizes (tested)
#
# The GPU image has torch, transformers, accelerate and peft but not diffusers, and no trl for the
# peer row; `prepare` downloads them as Python 3.12 manylinux wheels without their dependencies
# (the ones the image lacks are named below), and `run` installs them into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
out="${2:-runs/gpu_figures}"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false

case "$mode" in
  prepare)
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    # diffusers for both trainers; trl 0.23.1 (the last with DDPO) and what it imports that the image lacks
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .whl "diffusers==0.42.1" "trl==0.23.1" "datasets==4.4.1" "dill==0.4.0" "multiprocess==0.70.18"
    ls -la .whl
    ;;
  run)
    if compgen -G ".whl/*.whl" > /dev/null; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
      export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
    fi
    export PYTHONPATH="$PWD:${PYTHONPATH:-}"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    # 560 s leaves the call's transfers inside the device's 10-minute limit; gpu_figures.json is
    # rewritten after every figure, so a cut-short run keeps what it finished
    timeout 560 python3 -m scripts.gpu_figures --out "$out" "${@:3}"
    ;;
  small)
    export PYTHONPATH="$PWD:${PYTHONPATH:-}"
    python3 -m scripts.gpu_figures --small --out "$out" "${@:3}"
    ;;
  *)
    echo "usage: bash scripts/gpu_figures.sh {prepare | run OUT | small OUT} [gpu_figures.py options]" >&2
    exit 2
    ;;
esac
