#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one call of at most 10 minutes (scripts/gpu_figures.py).
#
#   bash scripts/gpu_figures.sh prepare        # here, with PyPI: wheels the GPU image lacks, into .whl/
#   bash scripts/gpu_figures.sh run OUT        # on the GPU machine (the repository root, .whl/ carried)
#   bash scripts/gpu_figures.sh small OUT      # on a CPU: the same code paths at tiny sizes (tested)
#   bash scripts/gpu_figures.sh painter OUT [MINUTES] [UNET_STEPS] [UNET_BATCH]
#       # on the GPU machine: the painter's UNet trained for MINUTES (default 5) on the shipped VAE's latents
#       # (UNET_STEPS sets the cosine schedule, default 40000, batch default 256), then scripts/caption_use.py
#       # and scripts/bench_painter.py on its EMA: does a long run make the UNet read the shape words?
#       # On a CPU with a tiny MINUTES / UNET_STEPS / UNET_BATCH it takes the same code paths (tested).
#
# The GPU image has torch, transformers, accelerate and peft but not diffusers, and no trl for the
# peer row; `prepare` downloads them as Python 3.12 manylinux wheels without their dependencies
# (the ones the image lacks are named below), and `run` installs them into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
out="${2:-runs/gpu_figures}"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false

install_carried_wheels() {
  if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
  fi
  export PYTHONPATH="$PWD:${PYTHONPATH:-}"
}

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
    install_carried_wheels
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    # 560 s leaves the call's transfers inside the device's 10-minute limit; gpu_figures.json is
    # rewritten after every figure, so a cut-short run keeps what it finished
    timeout 560 python3 -m scripts.gpu_figures --out "$out" "${@:3}"
    ;;
  painter)
    # the carried wheels are the GPU image's missing diffusers (Python 3.12); where diffusers imports (this
    # toolkit's own environment, e.g. the CPU test after `prepare`) they are neither needed nor installable
    if python3 -c "import diffusers" 2>/dev/null; then export PYTHONPATH="$PWD:${PYTHONPATH:-}"; else install_carried_wheels; fi
    minutes="${3:-5}"
    steps="${4:-40000}"
    batch="${5:-256}"
    run="${PAINTER_RUN:-/tmp/painter_gpu}"  # checkpoints stay there (too large to come back); results go to OUT
    mkdir -p "$out"
    bf16=()
    if python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then bf16=(--unet-bf16); fi
    # the whole invocation (data, latents, UNet) stops at MINUTES with a checkpoint; the same line continues it
    python3 -m scripts.pretrain_tiny_sd --out "$run" --n-images "${PAINTER_N_IMAGES:-16000}" \
      --vae-from alignment/pretrained/tiny_painter/vae \
      --noise-schedule zero-snr-v --unet-steps "$steps" --unet-batch "$batch" "${bf16[@]}" \
      --time-limit-minutes "$minutes" 2>&1 | tee "$out/pretrain.log"
    cp "$run/metrics.jsonl" "$out/painter_metrics.jsonl"  # the losses (a row every 50 steps and at the stop)
    python3 -m scripts.pretrain_tiny_sd --out "$run" --preview
    python3 -m scripts.caption_use --painter "$run/painter_preview" --n "${CAPTION_N:-64}" --out "$out/caption_use.json"
    # shellcheck disable=SC2086  # BENCH_ARGS: extra options, word-split on purpose (the CPU test: --no-score)
    python3 -m scripts.bench_painter --painter "$run/painter_preview" --n "${BENCH_N:-256}" --out "$out/bench" \
      ${BENCH_ARGS:-}
    ;;
  small)
    export PYTHONPATH="$PWD:${PYTHONPATH:-}"
    python3 -m scripts.gpu_figures --small --out "$out" "${@:3}"
    ;;
  *)
    echo "usage: bash scripts/gpu_figures.sh {prepare | run OUT | small OUT} [gpu_figures.py options]" >&2
    echo "       bash scripts/gpu_figures.sh painter OUT [MINUTES] [UNET_STEPS] [UNET_BATCH]" >&2
    exit 2
    ;;
esac
