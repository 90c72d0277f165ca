"""The fine-tuning processes do not load scipy (≈ 50 MiB resident) that diffusers / transformers never use there."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# A fresh interpreter: the test process itself has scipy loaded (metrics, other tests).
_TRAINER_WITHOUT_SCIPY = """
import sys
from alignment import DDPOTrainer, RewardGradConfig, RewardGradTrainer
from tests.ddpo_helpers import Brightness, tiny_config

out = sys.argv[1]
trainer = DDPOTrainer(tiny_config(out + "/ddpo", num_epochs=1, eval_every=0), reward=Brightness())
trainer.train()
loaded = sorted(m for m in sys.modules if m == "scipy" or m.startswith("scipy."))
assert not loaded, f"scipy modules loaded by DDPO: {loaded[:5]}"
RewardGradTrainer(RewardGradConfig(output_dir=out + "/rg", pretrained_model=out + "/ddpo/tiny_sd",
                                   num_epochs=1), reward=Brightness())
loaded = sorted(m for m in sys.modules if m == "scipy" or m.startswith("scipy."))
assert not loaded, f"scipy modules loaded by reward-grad: {loaded[:5]}"

# scipy is still there for everything else in the process
from artquant_core.metrics import evaluate_scores
result = evaluate_scores([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
assert abs(result["srcc"] - 0.8) < 1e-9, result
print("ok")
"""


def test_trainers_leave_scipy_unloaded_and_importable(tmp_path):
    proc = subprocess.run([sys.executable, "-c", _TRAINER_WITHOUT_SCIPY, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


_TRANSFORMERS_DECIDED_FIRST = """
import sys
from transformers import HfArgumentParser  # transformers decides "scipy is installed" here
from alignment.pipeline import import_model_libraries
import_model_libraries()  # must not hide scipy now: transformers would fail importing its losses
import transformers.modeling_utils
print("ok")
"""


def test_no_hiding_once_transformers_has_decided():
    proc = subprocess.run([sys.executable, "-c", _TRANSFORMERS_DECIDED_FIRST], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


def test_noop_when_scipy_is_already_loaded():
    import scipy  # noqa: F401

    from alignment.pipeline import import_model_libraries

    import_model_libraries()
    assert sys.modules["scipy"] is not None
