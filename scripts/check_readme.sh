#!/usr/bin/env bash
# Try the README as a newcomer would: a fresh copy of the repository (git archive of HEAD, so
# nothing untracked helps), a fresh virtual environment, then the README's top commands verbatim:
# the first installs the toolkit and runs `artquant demo --out demo_out`, the second installs the
# dev extra and runs the tests. Then the mistakes a newcomer makes must each be one clear line.
#
#   scripts/check_readme.sh            # everything (needs PyPI access for pip; ~15 min on 2 cores)
#   QUICK=1 scripts/check_readme.sh    # the demo with --quick
#   SKIP_TESTS=1 scripts/check_readme.sh
#
# Not part of CI (pip needs the network); .ci/run already runs the test command verbatim.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/artquant-readme.XXXXXX")
echo "fresh copy in $WORK"
git -C "$ROOT" archive HEAD | tar -x -C "$WORK"
cd "$WORK"

# The fenced bash blocks before the first "## " heading, one command each (tests/test_readme.py
# keeps them at exactly two).
mapfile -t COMMANDS < <(python3 - <<'EOF'
import re
head = open("README.md").read().split("\n## ", 1)[0]
for block in re.findall(r"```bash\n(.+?)\n```", head, flags=re.S):
    print(block.strip())
EOF
)
[ "${#COMMANDS[@]}" -eq 2 ] || { echo "expected 2 commands at the README's top, found ${#COMMANDS[@]}"; exit 1; }

demo_command=${COMMANDS[0]}
if [ "${QUICK:-0}" = 1 ]; then demo_command="$demo_command --quick"; fi
echo "+ $demo_command"
start=$(date +%s)
bash -c "$demo_command"
echo "demo finished in $(( $(date +%s) - start )) s"

.venv/bin/python - <<'EOF'
import json, math
from pathlib import Path
summary = json.loads(Path("demo_out/summary.json").read_text())
for key in ("scorer_test_srcc", "baseline_test_srcc", "ddpo_reward_first", "ddpo_reward_last", "total_s",
            "ceiling_srcc"):
    assert math.isfinite(summary[key]), key
html = Path("demo_out/report.html").read_text()
assert html.count("data:image/png;base64,") >= 8, "report.html lacks its embedded pictures"
from artquant_core import ArtQuantScorer
ArtQuantScorer.from_pretrained("demo_out/scorer")
print("demo_out: summary.json, report.html and scorer/ are as promised")
EOF

# Newcomer mistakes: each must end in exactly one line on stderr, naming the culprit, exit status 1.
one_line_error() {
  local expect=$1; shift
  local err
  set +e
  err=$(HF_HUB_OFFLINE=1 .venv/bin/artquant "$@" 2>&1 >/dev/null | grep -v -i "warn" | grep -v "^ ")
  local code=${PIPESTATUS[0]}
  set -e
  local lines
  lines=$(printf '%s\n' "$err" | grep -c "^artquant" || true)
  if [ "$lines" -ne 1 ] || ! printf '%s' "$err" | grep -q -- "$expect"; then
    echo "FAIL: artquant $* -> expected one 'artquant ... error' line mentioning '$expect', got:"
    printf '%s\n' "$err"
    exit 1
  fi
  echo "ok: artquant $* -> $(printf '%s' "$err" | grep '^artquant')"
}
one_line_error "config.json" score --model configs demo_out/data/images/000000.png
one_line_error "Qwen/Qwen2.5-VL-7B-Instruct" score --model Qwen/Qwen2.5-VL-7B-Instruct demo_out/data/images/000000.png
one_line_error "model_index.json" ddpo --pretrained_model configs --num_epochs 1 --output_dir ddpo_err
one_line_error "did you mean" train-scorer --config configs/scorer_qwen2_5_vl_3b.yaml --lora_rnak 8
# bf16 is refused only where neither a GPU nor the CPU supports it (CPUs with AMX / AVX512-BF16 train in bf16)
if ! .venv/bin/python -c "import torch; from transformers import TrainingArguments as T
torch.cuda.is_available() or T('bf16_probe', bf16=True, use_cpu=True)" >/dev/null 2>&1; then
  one_line_error "bf16" train-scorer --config configs/scorer_qwen2_5_vl_3b.yaml --train_data demo_out/data/train.json \
      --image_root demo_out/data --eval_data demo_out/data/val.json --output_dir bf16_err
fi

if [ "${SKIP_TESTS:-0}" != 1 ]; then
  echo "+ ${COMMANDS[1]}"
  bash -c "${COMMANDS[1]}"
fi
echo "README check passed ($WORK)"
